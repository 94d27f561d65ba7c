"""lt_det's parts as plain callables for detectron2's LazyConfig (Python configs).

A YACS config names lt_det's parts by keys (``MODEL.LT_LOSS.NAME``, ``DATALOADER.SAMPLER_TRAIN``,
``TEST.LVIS_EVAL.*``); a lazy config calls them through ``LazyCall``. Each function here builds
the same object the YACS path builds, from the same defaults, so the two kinds of config train
the same model::

    from detectron2.config import LazyCall as L
    from lt_det.lazy import lt_loss

    model.roi_heads.box_predictor.cls_loss = L(lt_loss)(
        name="eqlv2", num_classes=1203, train_datasets="lvis_v1_train")

``configs/lazy/`` holds complete configs; ``train_net.py --config-file x.py`` trains them.
"""
import inspect
import logging
import os
from typing import Callable, Optional, Sequence, Type, Union

import torch

from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog, build_detection_train_loader
from detectron2.data.samplers import TrainingSampler
from detectron2.solver.build import maybe_add_gradient_clipping

from .calibration import Calibration, build_calibration, get_calibration_class
from .config import add_lt_det_config
from .data.build import lt_train_sampler, resumable_train_loader
from .data.class_stats import get_class_stats
from .data.datasets import ensure_class_stats
from .evaluation.backends import DEFAULT_BACKEND
from .evaluation.lvis_evaluator import LVISEvaluator, train_class_stats
from .losses import LTLoss, build_loss, get_loss_class
from .losses.base import IMPLEMENTATIONS

__all__ = ["lt_loss", "calibration", "class_frequency", "lt_train_loader", "lvis_evaluator", "gradient_clipped"]

logger = logging.getLogger(__name__)

DatasetNames = Union[str, Sequence[str]]


def _names(datasets: DatasetNames) -> tuple:
    return (datasets,) if isinstance(datasets, str) else tuple(datasets)


def lt_loss(
    name: str,
    num_classes: int,
    train_datasets: DatasetNames = (),
    implementation: str = "auto",
    **overrides,
) -> LTLoss:
    """The registered loss ``name`` (a ``MODEL.LT_LOSS.NAME`` value), as ``build_loss`` builds it.

    Its arguments are the loss's YACS defaults (``MODEL.LT_LOSS.*``, documented in each loss's
    module), with the class statistics of ``train_datasets`` where the loss needs them;
    ``overrides`` replace any of them by the loss's own argument names (its ``__init__``), e.g.
    ``lt_loss("eql", 1203, "lvis_v1_train", lambda_=0.00177)``.

    Args:
        name: a registered loss (:func:`lt_det.losses.list_losses`).
        num_classes: K, the number of foreground classes (the ROI heads' ``num_classes``).
        train_datasets: the training dataset name(s) whose statistics the loss reads.
        implementation: "auto", "fused" or "reference" (``MODEL.LT_LOSS.IMPLEMENTATION``).
    Raises:
        KeyError: unknown loss (listing the registered ones), or a loss that needs statistics the
            datasets lack (saying which).
        TypeError: an override that is not an argument of the loss (listing the valid ones).
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"lt_loss: implementation is {implementation!r}; expected one of {IMPLEMENTATIONS}")
    cls = get_loss_class(name)
    valid = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "num_classes")]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise TypeError(f"lt_loss({name!r}): {unknown} are not arguments of {cls.__name__}; valid: {valid}")
    cfg = get_cfg()
    add_lt_det_config(cfg)
    cfg.MODEL.LT_LOSS.NAME = name
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
    cfg.DATASETS.TRAIN = _names(train_datasets)
    takes_stats = "class_stats" in inspect.signature(cls.from_config).parameters
    if takes_stats and not cfg.DATASETS.TRAIN:
        raise KeyError(f"lt_loss({name!r}) needs per-class training statistics: pass train_datasets=<the training "
                       "dataset names> (a lazy config: dataloader.train.dataset.names)")
    cfg.MODEL.LT_LOSS.IMPLEMENTATION = implementation
    return build_loss(cfg, **overrides)


def calibration(method: str, train_datasets: DatasetNames = (), **keys) -> Optional[Calibration]:
    """The post-hoc calibration ``method`` (a ``TEST.CALIBRATION.METHOD`` value) as
    ``build_calibration`` builds it, for ``LTFastRCNNOutputLayers(calibration=...)``.

    Its settings are the YACS defaults of ``TEST.CALIBRATION.<METHOD>``; ``keys`` replace them by
    their YACS names in lower case, e.g. ``calibration("norcal", "lvis_v1_train", gamma=0.6)``.
    None for "none" and for a method's identity setting.

    Raises:
        KeyError: unknown method (listing the registered ones) or key (listing the method's keys).
        ValueError: a method that needs the statistics of ``train_datasets`` and they have none.
    """
    cfg = add_lt_det_config(get_cfg())
    cfg.TEST.CALIBRATION.METHOD = method
    names = list(_names(train_datasets))
    cfg.DATASETS.TRAIN = tuple(names)
    if method not in ("none", ""):
        get_calibration_class(method)  # an unknown name lists the registered ones
        node = cfg.TEST.CALIBRATION[method.upper()]
        for key, value in keys.items():
            if key.upper() not in node:
                raise KeyError(f"calibration({method!r}): no key {key!r}; valid: {sorted(k.lower() for k in node)}")
            node[key.upper()] = value
    try:
        stats = get_class_stats(names) if names else None
    except (KeyError, ValueError):
        stats = None  # build_calibration says what is missing if the method needs them
    return build_calibration(cfg, stats)


def class_frequency(train_datasets: DatasetNames) -> Optional[list]:
    """(K,) "r" / "c" / "f" of each class of the training datasets, for the box predictor's
    per-group statistics (``LTFastRCNNOutputLayers(class_frequency=...)``); None (with a warning)
    when the datasets have no statistics."""
    try:
        return get_class_stats(list(_names(train_datasets))).frequency.tolist()
    except (KeyError, ValueError) as e:
        logger.warning(f"No per-group classification statistics will be logged: {e}")
        return None


def lt_train_loader(
    dataset: Sequence[dict],
    mapper: Callable,
    total_batch_size: int,
    *,
    sampler: str = "TrainingSampler",
    repeat_threshold: float = 0.001,
    repeat_sqrt: bool = True,
    seed: Optional[int] = None,
    aspect_ratio_grouping: bool = True,
    num_workers: int = 0,
    exact_resume: bool = False,
):
    """detectron2's ``build_detection_train_loader`` with the sampler chosen by name, built on the
    same dataset list the loader indexes (``DATALOADER.SAMPLER_TRAIN`` and its keys in YACS).

    Args:
        dataset: the dataset dicts (``get_detection_dataset_dicts(names=...)``).
        sampler: "TrainingSampler", "RepeatFactorTrainingSampler" (RFS with ``repeat_threshold``
            t and ``repeat_sqrt``) or "ClassAwareSampler".
        seed: the sampler's seed; None or < 0 = a seed shared by all processes.
        exact_resume: lt_det's resumable stream instead (``DATALOADER.EXACT_RESUME`` in YACS):
            a resumed run continues with the batches of an uninterrupted one.
    """
    if seed is not None and seed < 0:
        seed = None
    if exact_resume:
        return resumable_train_loader(sampler, dataset, mapper, total_batch_size, repeat_threshold=repeat_threshold,
                                      repeat_sqrt=repeat_sqrt, seed=seed, aspect_ratio_grouping=aspect_ratio_grouping,
                                      num_workers=num_workers)
    if sampler == "RandomSubsetTrainingSampler":
        raise ValueError("lt_train_loader: build RandomSubsetTrainingSampler with LazyCall and pass it to "
                         "detectron2's build_detection_train_loader(sampler=...)")
    built = lt_train_sampler(sampler, dataset, repeat_threshold=repeat_threshold, repeat_sqrt=repeat_sqrt, seed=seed)
    if built is None:
        built = TrainingSampler(len(dataset), seed=seed)
    return build_detection_train_loader(
        dataset=dataset, mapper=mapper, sampler=built, total_batch_size=total_batch_size,
        aspect_ratio_grouping=aspect_ratio_grouping, num_workers=num_workers,
    )


def lvis_evaluator(
    dataset_name: str,
    output_dir: str,
    tasks: Sequence[str] = ("bbox", "segm"),
    train_datasets: DatasetNames = (),
    backend: str = DEFAULT_BACKEND,
    fixed_ap_dets_per_class: Optional[int] = None,
    save_per_class_results: bool = True,
) -> LVISEvaluator:
    """lt_det's LVIS evaluator (``TEST.LVIS_EVAL.*`` in YACS) on the registered ``dataset_name``,
    writing to ``output_dir/inference/dataset_name``; the per-class outputs use the training image
    counts of ``train_datasets`` (or the evaluation json's when empty), which also give the frequency
    groups of an evaluation json without them."""
    ensure_class_stats(dataset_name)  # also writes the category id mapping the evaluator reads
    stats = train_class_stats(_names(train_datasets), len(MetadataCatalog.get(dataset_name).thing_classes))
    return LVISEvaluator(
        dataset_name, os.path.join(output_dir, "inference", dataset_name), tasks=tuple(tasks), backend=backend,
        fixed_ap_dets_per_class=fixed_ap_dets_per_class,
        train_image_count=None if stats is None else stats.image_count.tolist(),
        save_per_class_results=save_per_class_results,
        train_frequency=None if stats is None else stats.frequency.tolist(),
        train_instance_count=None if stats is None else stats.instance_count.tolist(),
    )


def gradient_clipped(optimizer_cls: Type[torch.optim.Optimizer], clip_value: float, clip_type: str = "value",
                     norm_type: float = 2.0) -> Type[torch.optim.Optimizer]:
    """``optimizer_cls`` with detectron2's ``SOLVER.CLIP_GRADIENTS`` (``ENABLED True``, ``CLIP_TYPE``
    "value" or "norm": each parameter's gradient clipped before every step), for a lazy config's
    ``optimizer = L(gradient_clipped(torch.optim.SGD, 1.0, "norm"))(...)``."""
    cfg = get_cfg()
    clip = cfg.SOLVER.CLIP_GRADIENTS
    clip.ENABLED, clip.CLIP_TYPE, clip.CLIP_VALUE, clip.NORM_TYPE = True, clip_type, clip_value, norm_type
    return maybe_add_gradient_clipping(cfg, optimizer_cls)

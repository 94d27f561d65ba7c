"""Checks of a config made when the trainer starts, before any training: what would otherwise fail
only after training (the evaluation backend, the test datasets) or only once the model is built
(the stage-1 checkpoint of a decoupled stage 2; the sampler's parameters, which
:func:`lt_det.data.build.check_sampler_params` checks), and the warning for a loss the model never
computes."""
import logging
import os
from typing import Sequence

from torch import nn

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling.roi_heads import CascadeROIHeads
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from detectron2.utils.file_io import PathManager

from ..data.class_stats import get_class_stats
from ..data.datasets import ensure_class_stats, load_json
from ..evaluation import get_backend
from ..evaluation.backends import BACKENDS_READING_FREQUENCY
from ..modeling import LTFastRCNNOutputLayers
from .checkpoint import check_checkpoint_readable

__all__ = ["check_evaluation_config", "check_stage1_checkpoint", "check_test_datasets", "warn_if_lt_loss_unused"]

logger = logging.getLogger(__name__)

STOCK_LOSS = "softmax_ce"  # MODEL.LT_LOSS.NAME's default: detectron2's own loss


def check_evaluation_config(backend: str, key: str = "TEST.LVIS_EVAL.BACKEND") -> None:
    """Raises KeyError naming ``key`` and the valid names when ``backend`` is not an LVIS
    evaluation backend: checked at the start, not after a whole training and inference."""
    try:
        get_backend(backend)
    except KeyError as e:
        raise KeyError(f"{key}: {e.args[0]}") from e


def check_test_datasets(test_datasets: Sequence[str], num_classes: int, train_datasets: Sequence[str],
                        backend: str, num_classes_key: str = "MODEL.ROI_HEADS.NUM_CLASSES") -> None:
    """Checks, before training, what the evaluation after it needs from each test dataset.

    Each must be registered, in LVIS format (lt_det's evaluator reads its json), with as many
    categories as the model has classes, and with a frequency group (r/c/f) per category: from its
    json, or else from the training statistics (then only a backend that does not read them from
    the file can evaluate it).

    Raises:
        KeyError / ValueError naming the dataset, its json and what is wrong.
    """
    for name in test_datasets:
        if name not in DatasetCatalog.list():
            raise KeyError(f"Test dataset '{name}' is not registered. Registered datasets: {sorted(DatasetCatalog.list())}")
        ensure_class_stats(name)
        meta = MetadataCatalog.get(name)
        if not hasattr(meta, "json_file"):
            raise ValueError(f"Test dataset '{name}' has no LVIS-format json (metadata 'json_file'), which lt_det's "
                             "LVIS evaluator reads; register it with lt_det.data.register_lvis_format")
        count = len(meta.thing_classes)
        if count != num_classes:
            raise ValueError(f"Test dataset '{name}' ({meta.json_file}) has {count} categories; the model has "
                             f"{num_classes} classes ({num_classes_key})")
        categories = load_json(meta.json_file)["categories"]
        if all("frequency" in c for c in categories):
            continue
        try:
            train_groups = get_class_stats(list(train_datasets)).num_classes == count if train_datasets else False
        except KeyError:
            train_groups = False
        if not train_groups:
            raise KeyError(f"Test dataset '{name}' ({meta.json_file}) has categories without 'frequency' (r/c/f), "
                           "which APr / APc / APf need, and no training dataset with statistics of the same classes "
                           "gives them")
        if backend in BACKENDS_READING_FREQUENCY:
            raise ValueError(f"Test dataset '{name}' ({meta.json_file}) has categories without 'frequency': the "
                             f"'{backend}' evaluation backend reads it from the file; use another backend")


def check_stage1_checkpoint(path: str, key: str = "MODEL.WEIGHTS") -> None:
    """Checks, before the model and the data loader are built, that decoupled stage 2's stage-1
    checkpoint ``path`` (the config key ``key``) exists and, a local ``.pth``, that torch can read it.

    The read is :class:`~lt_det.engine.checkpoint.SafeCheckpointer`'s check in its cheap form
    (``full=False``: the archive's index and structure, not the tensors), since stage 2 reads the
    whole file again when it loads it. A detectron2 ``.pkl`` is left to that load.

    A URL (``detectron2://``, ``https://``) is left to the load, which downloads it.

    Raises:
        FileNotFoundError: no file at ``path``, naming ``key``.
        UnreadableCheckpointError: a truncated, empty or foreign file, naming it.
    """
    if path and "://" in path:
        return
    if not path or not PathManager.exists(path):
        raise FileNotFoundError(f"Stage-1 checkpoint not found: {path!r} (set {key} to the stage-1 model)")
    if path.endswith(".pth") and os.path.isfile(path):
        check_checkpoint_readable(path, full=False)


def warn_if_lt_loss_unused(cfg, model: nn.Module) -> None:
    """Warns when ``cfg`` selects a box classification loss that ``model`` never computes.

    lt_det's losses run in :class:`LTFastRCNNOutputLayers` only, the predictor of lt_det's ROI
    heads (``LTStandardROIHeads``, ``LTCascadeROIHeads`` and their subclasses). With another box
    predictor, detectron2's stock one for instance, ``MODEL.LT_LOSS.NAME`` would be silently
    ignored; so would detectron2 main's ``MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE`` / ``USE_FED_LOSS``
    where the predictor does not implement them (main's stock predictor does; 0.6's has neither).
    The built model is inspected rather than ``MODEL.ROI_HEADS.NAME``: what counts is which
    predictor its heads built.
    """
    predictors = [m for m in model.modules() if isinstance(m, FastRCNNOutputLayers)]
    if any(isinstance(p, LTFastRCNNOutputLayers) for p in predictors):
        return
    ignored = []
    if cfg.MODEL.LT_LOSS.NAME != STOCK_LOSS:
        ignored.append(f"MODEL.LT_LOSS.NAME {cfg.MODEL.LT_LOSS.NAME!r}")
    for key in ("USE_SIGMOID_CE", "USE_FED_LOSS"):
        # detectron2 main's FastRCNNOutputLayers stores each as an attribute of the same name
        implemented = any(getattr(p, key.lower(), False) for p in predictors)
        if cfg.MODEL.ROI_BOX_HEAD.get(key, False) and not implemented:
            ignored.append(f"MODEL.ROI_BOX_HEAD.{key}")
    if not ignored:
        return
    cascade = any(isinstance(m, CascadeROIHeads) for m in model.modules())
    logger.warning(
        f"{' and '.join(ignored)} will not be used: MODEL.ROI_HEADS.NAME {cfg.MODEL.ROI_HEADS.NAME!r} "
        "builds a box predictor that does not compute lt_det's losses. Set MODEL.ROI_HEADS.NAME to "
        f"{'LTCascadeROIHeads' if cascade else 'LTStandardROIHeads'} to train with them."
    )

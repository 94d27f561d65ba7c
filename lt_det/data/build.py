"""The training data loader: detectron2's, with the sampler chosen by ``DATALOADER.SAMPLER_TRAIN``.

Samplers built here (the others are detectron2's and built by detectron2):

* ``RepeatFactorTrainingSampler``: factors from :func:`lt_det.data.samplers.image_repeat_factors`
  with ``DATALOADER.REPEAT_THRESHOLD`` (t) and ``DATALOADER.REPEAT_SQRT``, counted on the same
  dataset list the loader indexes.
* ``ClassAwareSampler``: :class:`lt_det.data.samplers.ClassAwareSampler` on that list.

Both are seeded with ``cfg.SEED`` when it is set (>= 0), otherwise with a seed shared by all
processes, as detectron2's samplers are.

:func:`check_sampler_params` checks the sampler's parameters without building anything: every
path that builds a sampler calls it, and so do the trainers when they start (with exact resume the
sampler itself is built only when the first batch is drawn).
"""
import logging
from typing import Callable, Optional, Sequence

from detectron2.data import DatasetMapper, build_detection_train_loader, get_detection_dataset_dicts
from detectron2.data.samplers import RepeatFactorTrainingSampler, TrainingSampler
from detectron2.utils import comm

from .resumable import ResumableTrainLoader
from .samplers import ClassAwareSampler, image_repeat_factors

logger = logging.getLogger(__name__)

__all__ = ["build_lt_train_loader", "build_lt_train_sampler", "check_sampler_params", "lt_train_sampler",
           "resumable_train_loader", "LT_SAMPLERS", "DETECTRON2_SAMPLERS", "EXACT_RESUME_SAMPLERS"]

LT_SAMPLERS = ("RepeatFactorTrainingSampler", "ClassAwareSampler")
DETECTRON2_SAMPLERS = ("TrainingSampler", "RandomSubsetTrainingSampler")
EXACT_RESUME_SAMPLERS = LT_SAMPLERS + ("TrainingSampler",)  # those lt_det's resumable stream can rebuild


def check_sampler_params(name: str, repeat_threshold: float, *, exact_resume: bool = False) -> None:
    """Checks the training sampler's parameters (the YACS keys ``DATALOADER.SAMPLER_TRAIN``,
    ``REPEAT_THRESHOLD`` and ``EXACT_RESUME``; a lazy config's ``dataloader.train.sampler``,
    ``repeat_threshold`` and ``exact_resume``) without building anything.

    Raises:
        ValueError: an unknown sampler name (listing the valid ones), a sampler exact resume does
            not support, or an RFS threshold t outside (0, 1].
    """
    if name not in LT_SAMPLERS + DETECTRON2_SAMPLERS:
        raise ValueError(f"Unknown training sampler {name!r} (DATALOADER.SAMPLER_TRAIN; a lazy config: "
                         f"dataloader.train.sampler); expected one of {LT_SAMPLERS + DETECTRON2_SAMPLERS}")
    if exact_resume and name not in EXACT_RESUME_SAMPLERS:
        raise ValueError(f"Exact resume (DATALOADER.EXACT_RESUME) supports the samplers {EXACT_RESUME_SAMPLERS}, "
                         f"not {name!r}")
    t = repeat_threshold
    if name == "RepeatFactorTrainingSampler" and not 0 < t <= 1:
        # t is compared with image frequencies f_c in (0, 1]: t > 1 repeats every image, t <= 0 none
        raise ValueError(f"The repeat factor threshold t (DATALOADER.REPEAT_THRESHOLD; a lazy config: "
                         f"dataloader.train.repeat_threshold) must be in (0, 1], got {t}")


def build_lt_train_sampler(cfg, dataset_dicts):
    """The sampler named by ``cfg.DATALOADER.SAMPLER_TRAIN`` over ``dataset_dicts``, or None for
    detectron2's own samplers (``build_detection_train_loader`` then builds them).

    Raises:
        ValueError: for an unknown sampler name, listing the valid ones.
    """
    return lt_train_sampler(
        cfg.DATALOADER.SAMPLER_TRAIN,
        dataset_dicts,
        repeat_threshold=cfg.DATALOADER.REPEAT_THRESHOLD,
        repeat_sqrt=cfg.DATALOADER.REPEAT_SQRT,
        seed=cfg.SEED if cfg.SEED >= 0 else None,
    )


def lt_train_sampler(
    name: str,
    dataset_dicts: Sequence[dict],
    *,
    repeat_threshold: float = 0.001,
    repeat_sqrt: bool = True,
    seed: Optional[int] = None,
):
    """The sampler ``name`` over ``dataset_dicts`` (plain arguments: the YACS keys above, or a
    LazyConfig's), or None for detectron2's own samplers.

    Args:
        name: one of :data:`LT_SAMPLERS` or :data:`DETECTRON2_SAMPLERS`.
        repeat_threshold, repeat_sqrt: RFS's t and factor form (``RepeatFactorTrainingSampler``).
        seed: the sampler's seed; None = a seed shared by all processes.

    Raises:
        ValueError: as :func:`check_sampler_params`.
    """
    check_sampler_params(name, repeat_threshold)
    if name == "RepeatFactorTrainingSampler":
        t, sqrt = repeat_threshold, repeat_sqrt
        factors = image_repeat_factors(dataset_dicts, t, sqrt=sqrt)
        logger.info(
            f"Repeat factor sampling, t = {t}, {'square-root' if sqrt else 'linear'} factors: "
            f"{int((factors > 1).sum())} of {len(factors)} images repeated, max factor "
            f"{float(factors.max()):.2f}, expected epoch {float(factors.sum()):.0f} images"
        )
        return RepeatFactorTrainingSampler(factors, seed=seed)
    if name == "ClassAwareSampler":
        sampler = ClassAwareSampler.from_dataset_dicts(dataset_dicts, seed=seed)
        logger.info(f"Class-aware sampling over {sampler.num_classes} classes present in {len(dataset_dicts)} images")
        return sampler
    return None  # one of DETECTRON2_SAMPLERS


def build_lt_train_loader(cfg, mapper: Optional[Callable] = None):
    """detectron2's ``build_detection_train_loader(cfg, mapper)`` with lt_det's samplers.

    The dataset list is loaded exactly as detectron2 loads it (same empty-image filter), and the
    sampler's statistics are counted on that list. ``mapper=None`` means detectron2's
    ``DatasetMapper(cfg, is_train=True)``; aspect-ratio grouping follows
    ``DATALOADER.ASPECT_RATIO_GROUPING`` for every sampler.
    """
    dataset = get_detection_dataset_dicts(
        cfg.DATASETS.TRAIN,
        filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
        min_keypoints=cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE if cfg.MODEL.KEYPOINT_ON else 0,
        proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None,
    )
    if cfg.DATALOADER.EXACT_RESUME:
        return resumable_train_loader(
            cfg.DATALOADER.SAMPLER_TRAIN, dataset, mapper or DatasetMapper(cfg, is_train=True), cfg.SOLVER.IMS_PER_BATCH,
            repeat_threshold=cfg.DATALOADER.REPEAT_THRESHOLD, repeat_sqrt=cfg.DATALOADER.REPEAT_SQRT,
            seed=cfg.SEED if cfg.SEED >= 0 else None, aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
            num_workers=cfg.DATALOADER.NUM_WORKERS)
    sampler = build_lt_train_sampler(cfg, dataset)
    return build_detection_train_loader(cfg, mapper=mapper, dataset=dataset, sampler=sampler)


def resumable_train_loader(
    sampler: str,
    dataset: Sequence[dict],
    mapper: Callable,
    total_batch_size: int,
    *,
    repeat_threshold: float = 0.001,
    repeat_sqrt: bool = True,
    seed: Optional[int] = None,
    aspect_ratio_grouping: bool = True,
    num_workers: int = 0,
) -> ResumableTrainLoader:
    """``DATALOADER.EXACT_RESUME``: the sampler ``sampler`` (see :func:`lt_train_sampler`), batch
    size, grouping and workers in lt_det's resumable stream (:mod:`lt_det.data.resumable`).

    Raises:
        ValueError: as :func:`check_sampler_params` (here, not when the sampler is built: that is
            when the first batch is drawn), or a batch size the processes cannot share.
    """
    check_sampler_params(sampler, repeat_threshold, exact_resume=True)
    world_size = comm.get_world_size()
    if total_batch_size % world_size:
        raise ValueError(f"The total batch size {total_batch_size} (SOLVER.IMS_PER_BATCH) must be divisible by "
                         f"the number of processes ({world_size})")

    def build(stream_seed: int):
        built = lt_train_sampler(sampler, dataset, repeat_threshold=repeat_threshold, repeat_sqrt=repeat_sqrt,
                                 seed=stream_seed)
        return built if built is not None else TrainingSampler(len(dataset), seed=stream_seed)

    return ResumableTrainLoader(list(dataset), mapper, build, seed=seed, batch_size=total_batch_size // world_size,
                                aspect_ratio_grouping=aspect_ratio_grouping, num_workers=num_workers)

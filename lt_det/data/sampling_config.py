"""Config keys of lt_det's training samplers (repeat factor and class-aware sampling), read by
:mod:`lt_det.data.build`.

detectron2 0.6 already has every key the samplers need except one, so nothing is renamed:

* ``DATALOADER.SAMPLER_TRAIN``: detectron2's, which also accepts ``"ClassAwareSampler"`` here.
* ``DATALOADER.REPEAT_THRESHOLD``: detectron2's t of repeat factor sampling.
* ``DATALOADER.REPEAT_SQRT``: added below with detectron2 main's name and default, so configs
  written for either detectron2 load unchanged.
* ``DATALOADER.EXACT_RESUME``: lt_det's (:mod:`lt_det.data.resumable`).
"""

__all__ = ["add_sampling_config"]


def add_sampling_config(cfg) -> None:
    """Adds the sampler keys detectron2 0.6 lacks (in place)."""
    if "REPEAT_SQRT" not in cfg.DATALOADER:
        # Repeat factor sampling: r(c) = max(1, sqrt(t / f(c))) if True (the LVIS paper,
        # App. B.2; detectron2's only form), else the linear r(c) = max(1, t / f(c)).
        # Same key and default as detectron2 main.
        cfg.DATALOADER.REPEAT_SQRT = True
    # True: the training stream resumes exactly where the checkpoint left it (same batches, same
    # augmentations, per-iteration seeds; lt_det.data.resumable), for TrainingSampler, repeat
    # factor and class-aware sampling. False: detectron2's loader, whose stream restarts on resume.
    # Off by default for now: it draws other (equally random) augmentations than detectron2's
    # loader, so the results recorded with the default so far would change.
    cfg.DATALOADER.EXACT_RESUME = False

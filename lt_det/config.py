"""``add_lt_det_config``: every config key lt_det adds to detectron2's, declared once.

Keys detectron2 already has are read, never redefined. Each part declares its own node, next to
the code that reads it, and comments every key with its meaning, the paper's symbol and the source
of its default:

* ``MODEL.LT_LOSS`` (+ detectron2 main's ``MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE`` / ``USE_FED_LOSS`` /
  ``FED_LOSS_*`` where this detectron2 lacks them): :mod:`lt_det.losses.config`
* ``DATALOADER.REPEAT_SQRT`` (detectron2 main's key), ``DATALOADER.EXACT_RESUME``:
  :mod:`lt_det.data.sampling_config`
* ``DECOUPLED``: :mod:`lt_det.engine.decoupled_config`
* ``DIAGNOSTICS``: :mod:`lt_det.engine.diagnostics_config`
* ``TEST.LVIS_EVAL``: :mod:`lt_det.evaluation.config`
* ``TEST.CALIBRATION``: :mod:`lt_det.calibration.config`
* ``MODEL.ROI_MASK_HEAD.COSINE_TEMPERATURE``: :mod:`lt_det.modeling.mask_head`
* ``MODEL.ROI_HEADS.MFS``: :mod:`lt_det.modeling.feature_memory`
"""
import re
from typing import Sequence

from detectron2.config import CfgNode

from .calibration import add_calibration_config
from .compat import detectron2_flavour
from .data.sampling_config import add_sampling_config
from .engine.decoupled_config import add_decoupled_config
from .engine.diagnostics_config import add_diagnostics_config
from .evaluation.config import add_evaluation_config
from .losses.config import add_loss_config
from .modeling.feature_memory import add_mfs_config
from .modeling.mask_head import add_mask_head_config


# detectron2 main's config keys that 0.6 lacks and lt_det does not add (those it adds on 0.6 are
# listed above), with what they do. Computed as the difference of get_cfg()'s keys between main at
# 02b5c4e and 0.6 (tests/test_compat.py checks it against the installed detectron2).
MAIN_ONLY_KEYS = {
    "FLOAT32_PRECISION": "torch's float32 matmul precision",
    "SOLVER.BASE_LR_END": "the final LR of the cosine schedule",
    "SOLVER.NUM_DECAYS": "the number of LR decays of WarmupStepWithFixedGammaLR",
    "SOLVER.RESCALE_INTERVAL": "the warm-up's rescaling of the schedule",
}


def merge_config(cfg: CfgNode, config_file: str = "", opts: Sequence[str] = ()) -> CfgNode:
    """``cfg.merge_from_file(config_file)`` (when given) and ``cfg.merge_from_list(opts)``; on
    detectron2 0.6 a key only main has is reported with the version it needs, not as a bare
    "Non-existent config key"."""
    try:
        if config_file:
            cfg.merge_from_file(config_file)
        cfg.merge_from_list(list(opts))
    except (KeyError, AssertionError) as e:  # YACS: KeyError from a file, AssertionError from a list
        match = re.search(r"Non-existent (?:config )?key: ([\w.]+)", str(e))
        key = match.group(1) if match else None
        if key in MAIN_ONLY_KEYS and detectron2_flavour() == "0.6":
            raise KeyError(
                f"{key} ({MAIN_ONLY_KEYS[key]}) is a detectron2 main key; the installed detectron2 is 0.6. "
                "Install main (`make setup D2=main`, or the README's upstream pip command) or remove the key."
            ) from e
        raise
    return cfg


def add_lt_det_config(cfg: CfgNode) -> CfgNode:
    """Adds lt_det's keys to a detectron2 config (in place) and returns it."""
    add_loss_config(cfg)
    add_sampling_config(cfg)
    add_decoupled_config(cfg)
    add_diagnostics_config(cfg)
    add_evaluation_config(cfg)
    add_calibration_config(cfg)
    add_mask_head_config(cfg)
    add_mfs_config(cfg)
    return cfg

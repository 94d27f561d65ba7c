"""``add_lt_det_config``: every config key lt_det adds to detectron2's, declared once.

Keys detectron2 already has are read, never redefined. Each part declares its own node, next to
the code that reads it, and comments every key with its meaning, the paper's symbol and the source
of its default:

* ``MODEL.LT_LOSS`` (+ detectron2 main's ``MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE`` / ``USE_FED_LOSS`` /
  ``FED_LOSS_*`` where this detectron2 lacks them): :mod:`lt_det.losses.config`
* ``DATALOADER.REPEAT_SQRT`` (detectron2 main's key): :mod:`lt_det.data.sampling_config`
* ``DECOUPLED``: :mod:`lt_det.engine.decoupled_config`
* ``DIAGNOSTICS``: :mod:`lt_det.engine.diagnostics_config`
* ``TEST.LVIS_EVAL``: :mod:`lt_det.evaluation.config`
* ``MODEL.ROI_MASK_HEAD.COSINE_TEMPERATURE``: :mod:`lt_det.modeling.mask_head`
"""
from detectron2.config import CfgNode

from .data.sampling_config import add_sampling_config
from .engine.decoupled_config import add_decoupled_config
from .engine.diagnostics_config import add_diagnostics_config
from .evaluation.config import add_evaluation_config
from .losses.config import add_loss_config
from .modeling.mask_head import add_mask_head_config


def add_lt_det_config(cfg: CfgNode) -> CfgNode:
    """Adds lt_det's keys to a detectron2 config (in place) and returns it."""
    add_loss_config(cfg)
    add_sampling_config(cfg)
    add_decoupled_config(cfg)
    add_diagnostics_config(cfg)
    add_evaluation_config(cfg)
    add_mask_head_config(cfg)
    return cfg

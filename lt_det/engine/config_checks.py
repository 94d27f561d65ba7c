"""Checks of a config made when the trainer starts, before any training: what would otherwise fail
only after training (the evaluation backend), and the warning for a loss the model never computes."""
import logging

from torch import nn

from detectron2.modeling.roi_heads import CascadeROIHeads
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers

from ..evaluation import get_backend
from ..modeling import LTFastRCNNOutputLayers

__all__ = ["check_evaluation_config", "warn_if_lt_loss_unused"]

logger = logging.getLogger(__name__)

STOCK_LOSS = "softmax_ce"  # MODEL.LT_LOSS.NAME's default: detectron2's own loss


def check_evaluation_config(backend: str, key: str = "TEST.LVIS_EVAL.BACKEND") -> None:
    """Raises KeyError naming ``key`` and the valid names when ``backend`` is not an LVIS
    evaluation backend: checked at the start, not after a whole training and inference."""
    try:
        get_backend(backend)
    except KeyError as e:
        raise KeyError(f"{key}: {e.args[0]}") from e


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

"""Sigmoid cross-entropy and sigmoid focal loss (SPEC section 1).

Logits (R, K + 1) with the background logit unused (detectron2 main's USE_SIGMOID_CE layout), or
(R, K) with ``background_logit=False``. Loss ``sum over (RoI, class) of l(z_ij, y_ij) / R`` with
``y = onehot(gt, K + 1)[:, :K]``; scores = sigma over the class logits, then a background column.
"""
from detectron2.config import configurable

from .base import BinaryLoss
from .functional import sigmoid_focal, weighted_binary_loss
from .registry import register_loss


@register_loss("sigmoid_ce")
class SigmoidCE(BinaryLoss):
    """Per-class BCE; classifier bias 0 by default (detectron2 main)."""

    @configurable
    def __init__(self, *, num_classes: int, background_logit: bool = True, prior_prob: float = 0.0):
        super().__init__(num_classes, "sigmoid", prior_prob, background_logit)

    @classmethod
    def from_config(cls, cfg):
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "background_logit": cfg.MODEL.LT_LOSS.SIGMOID.BACKGROUND_LOGIT,
            "prior_prob": cfg.MODEL.LT_LOSS.SIGMOID.PRIOR_PROB,
        }

    def loss(self, logits, gt_classes, **extras):
        """(R, K [+ 1]) logits, (R,) labels -> sum BCE / R."""
        return weighted_binary_loss(logits, gt_classes, self.num_classes, self.activation)


@register_loss("focal")
class SigmoidFocalLoss(BinaryLoss):
    """``sum alpha_t (1 - p_t)^gamma BCE / R`` (torchvision / fvcore definition), alpha < 0: no alpha_t."""

    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        alpha: float = 0.25,
        gamma: float = 2.0,
        background_logit: bool = True,
        prior_prob: float = 0.0,
    ):
        super().__init__(num_classes, "sigmoid", prior_prob, background_logit)
        self.focal = sigmoid_focal(alpha, gamma)

    @classmethod
    def from_config(cls, cfg):
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "alpha": cfg.MODEL.LT_LOSS.FOCAL.ALPHA,
            "gamma": cfg.MODEL.LT_LOSS.FOCAL.GAMMA,
            "background_logit": cfg.MODEL.LT_LOSS.SIGMOID.BACKGROUND_LOGIT,
            "prior_prob": cfg.MODEL.LT_LOSS.SIGMOID.PRIOR_PROB,
        }

    def loss(self, logits, gt_classes, **extras):
        """(R, K [+ 1]) logits, (R,) labels -> sum focal / R."""
        return weighted_binary_loss(logits, gt_classes, self.num_classes, self.focal)

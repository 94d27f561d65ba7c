"""Sigmoid cross-entropy: one binary classifier per foreground class (detectron2 main's
``MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE``).

Logits (R, K + 1) with the background logit unused (detectron2 main's layout), or (R, K) with
``background_logit=False``. With ``y = onehot(gt, K + 1)[:, :K]``:

    L = sum_ij BCE(z_ij, y_ij) / R

(a sum over (RoI, class) divided by the number of RoIs, never by R * K). Scores: sigma over the K
class logits, then a background column.
"""
from detectron2.config import CfgNode as CN
from detectron2.config import configurable

from . import fused
from .base import BinaryLoss
from .functional import binary_cross_entropy, onehot_targets
from .registry import register_loss


@register_loss("sigmoid_ce")
class SigmoidCE(BinaryLoss):
    """Per-class BCE; classifier bias 0 by default (detectron2 main)."""

    @configurable
    def __init__(self, *, num_classes: int, background_logit: bool = True, prior_prob: float = 0.0):
        super().__init__(num_classes, "sigmoid", prior_prob, background_logit)

    @classmethod
    def add_config(cls, cfg):
        # Shared by every loss with one sigmoid per class and an optional background logit
        # (sigmoid_ce, focal, class_balanced_focal).
        cfg.MODEL.LT_LOSS.SIGMOID = CN()
        # True: K + 1 logits with the background logit unused (detectron2 main's layout);
        # False: K logits and a zero background score at test time.
        cfg.MODEL.LT_LOSS.SIGMOID.BACKGROUND_LOGIT = True
        # pi: classifier bias init -log((1 - pi) / pi); 0 keeps bias 0 (detectron2 main).
        cfg.MODEL.LT_LOSS.SIGMOID.PRIOR_PROB = 0.0

    @classmethod
    def from_config(cls, cfg):
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "background_logit": cfg.MODEL.LT_LOSS.SIGMOID.BACKGROUND_LOGIT,
            "prior_prob": cfg.MODEL.LT_LOSS.SIGMOID.PRIOR_PROB,
        }

    def loss(self, logits, gt_classes, **extras):
        """(R, K [+ 1]) logits, (R,) labels -> sum_ij BCE(z_ij, y_ij) / R."""
        z = self.class_logits(logits)
        y = onehot_targets(gt_classes, self.num_classes)
        return binary_cross_entropy(z, y).sum() / len(z)

    def fused_loss(self, logits, gt_classes, **extras):
        return fused.weighted_binary_loss(logits, gt_classes, num_columns=self.num_classes)

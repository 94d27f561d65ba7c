"""Gumbel CE (GOL's activation ablation; SPEC section 4).

Logits (R, K + 1): K + 1 Gumbel binary classifiers, the background column with target 1 on
background RoIs: ``y = onehot(gt, K + 1)``; ``L = sum l_gumbel(z, y) / R`` with the logits
clamped to [-4, 10] (zero gradient outside). The released code then clamps the reduced loss to
[0, 20] (all gradient vanishes when the batch loss exceeds 20); ``clamp_loss`` keeps that,
default on. Init: weights 0.001, bias -2. Test: exp(-exp(-z)) over K + 1, unclamped.
"""
from detectron2.config import configurable

from .base import BinaryLoss, LTLoss
from .functional import weighted_binary_loss
from .registry import register_loss

LOSS_CLAMP = (0.0, 20.0)


@register_loss("gumbel_ce")
class GumbelCE(BinaryLoss):
    @configurable
    def __init__(self, *, num_classes: int, clamp_loss: bool = True):
        super().__init__(num_classes, "gumbel", 0.0, background_logit=True)
        self.clamp_loss = clamp_loss

    @classmethod
    def from_config(cls, cfg):
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "clamp_loss": cfg.MODEL.LT_LOSS.GUMBEL_CE.CLAMP_LOSS,
        }

    def loss(self, logits, gt_classes, **extras):
        """(R, K + 1) logits, (R,) labels -> sum l_gumbel(z, onehot(gt, K + 1)) / R."""
        loss = weighted_binary_loss(logits, gt_classes, activation=self.activation)
        return loss.clamp(*LOSS_CLAMP) if self.clamp_loss else loss

    # The background column is a trained classifier here: plain argmax over K + 1 scores.
    predict_classes = LTLoss.predict_classes

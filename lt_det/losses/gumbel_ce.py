"""Gumbel CE (Alexandridis et al., "Long-tailed Instance Segmentation using Gumbel Optimized
Loss", ECCV 2022, the activation ablation; released code: kostas1515/GOL).

Logits (R, K + 1): K + 1 Gumbel binary classifiers, the background column with target 1 on
background RoIs, ``y = onehot(gt, K + 1)``:

    L = sum_ij l_gumbel(z_ij, y_ij) / R,    l_gumbel = BCE of eta(clamp(z, -4, 10)),
    eta(x) = exp(-exp(-x))

(:func:`lt_det.losses.functional.gumbel_cross_entropy`). The released code then clamps the
reduced loss to [0, 20] (all gradient vanishes when the batch loss exceeds 20); ``clamp_loss``
keeps that, default on. Init: weights 0.001, bias -2. Test: eta(z) over K + 1, unclamped.
"""
from torch.nn import functional as F

from detectron2.config import CfgNode as CN
from detectron2.config import configurable

from . import fused
from .base import BinaryLoss, LTLoss
from .functional import gumbel_cross_entropy
from .registry import register_loss

LOSS_CLAMP = (0.0, 20.0)


@register_loss("gumbel_ce")
class GumbelCE(BinaryLoss):
    @configurable
    def __init__(self, *, num_classes: int, clamp_loss: bool = True):
        super().__init__(num_classes, "gumbel", 0.0, background_logit=True)
        self.clamp_loss = clamp_loss

    @classmethod
    def add_config(cls, cfg):
        cfg.MODEL.LT_LOSS.GUMBEL_CE = CN()
        # Clamp the reduced loss to [0, 20] as GOL's released code does (zeroes every gradient of a
        # step whose loss exceeds 20).
        cfg.MODEL.LT_LOSS.GUMBEL_CE.CLAMP_LOSS = True

    @classmethod
    def from_config(cls, cfg):
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "clamp_loss": cfg.MODEL.LT_LOSS.GUMBEL_CE.CLAMP_LOSS,
        }

    def clamped(self, loss):
        return loss.clamp(*LOSS_CLAMP) if self.clamp_loss else loss

    def loss(self, logits, gt_classes, **extras):
        """(R, K + 1) logits, (R,) labels -> sum l_gumbel(z, onehot(gt, K + 1)) / R."""
        y = F.one_hot(gt_classes, self.num_classes + 1).float()
        return self.clamped(gumbel_cross_entropy(logits, y).sum() / len(logits))

    def fused_loss(self, logits, gt_classes, **extras):
        return self.clamped(fused.weighted_binary_loss(logits, gt_classes, activation="gumbel"))

    # The background column is a trained classifier here: plain argmax over K + 1 scores.
    predict_classes = LTLoss.predict_classes

"""Sigmoid focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, eq. 5), as
torchvision's ``sigmoid_focal_loss`` and fvcore define it.

Logits as ``sigmoid_ce``: (R, K + 1) with the background logit unused, or (R, K). With
``p = sigma(z)``, ``p_t = p y + (1 - p)(1 - y)`` and ``alpha_t = alpha y + (1 - alpha)(1 - y)``:

    L = sum_ij alpha_t (1 - p_t)^gamma BCE(z_ij, y_ij) / R

gamma = 2, alpha = 0.25 (the paper's defaults); alpha < 0 drops alpha_t. Scores: sigma, then a
background column.
"""
from detectron2.config import CfgNode as CN
from detectron2.config import configurable

from . import fused
from .base import BinaryLoss
from .functional import onehot_targets, sigmoid_focal_loss
from .registry import register_loss
from .sigmoid_ce import SigmoidCE


@register_loss("focal")
class SigmoidFocalLoss(BinaryLoss):
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
        self.alpha, self.gamma = alpha, gamma

    @classmethod
    def add_config(cls, cfg):
        SigmoidCE.add_config(cfg)  # the logit layout and bias init keys
        cfg.MODEL.LT_LOSS.FOCAL = CN()
        cfg.MODEL.LT_LOSS.FOCAL.ALPHA = 0.25  # alpha (Lin et al.; torchvision / fvcore default); < 0 disables alpha_t
        cfg.MODEL.LT_LOSS.FOCAL.GAMMA = 2.0  # gamma, the focusing parameter (Lin et al. default)

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
        """(R, K [+ 1]) logits, (R,) labels -> sum_ij focal(z_ij, y_ij) / R."""
        z = self.class_logits(logits)
        y = onehot_targets(gt_classes, self.num_classes)
        return sigmoid_focal_loss(z, y, self.gamma, self.alpha).sum() / len(z)

    def fused_loss(self, logits, gt_classes, **extras):
        return fused.weighted_binary_loss(logits, gt_classes, activation="focal", focal=fused.Focal(self.gamma, self.alpha),
                                          num_columns=self.num_classes)

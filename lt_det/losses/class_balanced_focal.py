"""Class-balanced sigmoid focal loss (Cui et al., "Class-Balanced Loss Based on Effective Number
of Samples", CVPR 2019; released code: richardaecn/class-balanced-loss).

Logits as ``focal``. Every term of RoI i is weighted by its class's weight ``w[gt_i]``
(:func:`.class_balanced.class_balanced_weights`, ``w_bg = 1``) in place of alpha_t (their code
passes the class weights as alpha):

    L = sum_ij w[gt_i] (1 - p_t)^gamma BCE(z_ij, y_ij) / R

Scores: sigma, then a background column.
"""
from typing import Optional, Sequence, Tuple

import torch

from detectron2.config import configurable

from lt_det.data.class_stats import ClassStats

from . import fused
from .base import BinaryLoss, class_stats_for
from .class_balanced import ClassBalancedCE, class_balanced_weights
from .focal import SigmoidFocalLoss
from .functional import onehot_targets, sigmoid_focal_loss
from .registry import register_loss


@register_loss("class_balanced_focal")
class ClassBalancedFocal(BinaryLoss):
    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        instance_count: Sequence[int],
        beta: float = 0.999,
        clip: Tuple[float, ...] = (),
        gamma: float = 2.0,
        background_logit: bool = True,
        prior_prob: float = 0.0,
    ):
        super().__init__(num_classes, "sigmoid", prior_prob, background_logit)
        self.gamma = gamma
        weights = class_balanced_weights(instance_count, beta, tuple(clip))
        self.register_buffer("class_weights", torch.cat([weights.float(), weights.new_ones(1).float()]),
                             persistent=False)  # (K + 1,), bg = 1

    @classmethod
    def add_config(cls, cfg):
        ClassBalancedCE.add_config(cfg)  # CLASS_BALANCED.BETA and .CLIP
        SigmoidFocalLoss.add_config(cfg)  # FOCAL.GAMMA and the sigmoid layout keys

    @classmethod
    def from_config(cls, cfg, class_stats: Optional[ClassStats] = None):
        stats = class_stats_for(cfg, "class_balanced_focal", class_stats)
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "instance_count": stats.instance_count,
            "beta": cfg.MODEL.LT_LOSS.CLASS_BALANCED.BETA,
            "clip": cfg.MODEL.LT_LOSS.CLASS_BALANCED.CLIP,
            "gamma": cfg.MODEL.LT_LOSS.FOCAL.GAMMA,
            "background_logit": cfg.MODEL.LT_LOSS.SIGMOID.BACKGROUND_LOGIT,
            "prior_prob": cfg.MODEL.LT_LOSS.SIGMOID.PRIOR_PROB,
        }

    def loss(self, logits, gt_classes, **extras):
        """(R, K [+ 1]) logits, (R,) labels -> sum_ij w[gt_i] focal_ij / R (no alpha_t)."""
        z = self.class_logits(logits)
        y = onehot_targets(gt_classes, self.num_classes)
        focal = sigmoid_focal_loss(z, y, self.gamma, alpha=-1.0)
        return (self.class_weights[gt_classes, None] * focal).sum() / len(z)

    def fused_loss(self, logits, gt_classes, **extras):
        return fused.weighted_binary_loss(
            logits, gt_classes, activation="focal", focal=fused.Focal(self.gamma, alpha=-1.0),
            num_columns=self.num_classes, row_weights=self.class_weights[gt_classes],
        )

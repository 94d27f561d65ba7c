"""Softmax Equalization Loss, SEQL (Tan et al.; SPEC section 3). No official detection code.

Logits (R, K + 1). For each foreground RoI i and each tail class j != gt_i (``T_j = 1[f_j <
lambda]``), draw ``beta_ij ~ Bernoulli(gamma)``; where beta_ij = 1, class j leaves the softmax
denominator (its logit becomes -inf before CE). Background RoIs and the background logit are never
masked. Loss = mean CE over RoIs. (ours) gamma = 0.9. beta_ij = 1[U_ij < gamma] with U from a
counter-based hash (:mod:`lt_det.losses.counter_rng`): Bernoulli(gamma), not torch.rand's stream.
Test: softmax.
"""
from typing import Sequence

import torch
from torch.nn import functional as F

from detectron2.config import configurable

from .base import LTLoss, class_stats_for, tail_classes
from .counter_rng import draw_keys
from .functional import RandomRemoval, softmax_ce
from .registry import register_loss


@register_loss("softmax_eql")
class SoftmaxEQL(LTLoss):
    @configurable
    def __init__(
        self, *, num_classes: int, image_frequency: Sequence[float], threshold: float = 0.0011, gamma: float = 0.9
    ):
        super().__init__(num_classes)
        self.gamma = gamma
        self.register_buffer("tail", tail_classes(image_frequency, threshold, "Softmax EQL"), persistent=False)

    @classmethod
    def from_config(cls, cfg):
        stats = class_stats_for(cfg, "softmax_eql")
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "image_frequency": stats.image_frequency,
            "threshold": cfg.MODEL.LT_LOSS.TAIL_THRESHOLD,
            "gamma": cfg.MODEL.LT_LOSS.SOFTMAX_EQL.GAMMA,
        }

    def loss(self, logits, gt_classes, **extras):
        """(R, K + 1) logits, (R,) labels -> mean CE with sampled tail classes masked out."""
        fg = (gt_classes < self.num_classes).float()
        tail = torch.cat([self.tail, self.tail.new_zeros(1)])  # the background logit is never removed
        removal = RandomRemoval(rows=fg, cols=tail, prob=self.gamma, keys=draw_keys(logits.device))
        return softmax_ce(logits, gt_classes, removal=removal)

    def scores(self, logits):
        """(R, K + 1) -> softmax (R, K + 1)."""
        return F.softmax(logits, dim=-1)

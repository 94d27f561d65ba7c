"""Softmax Equalization Loss, SEQL (Tan et al., "Equalization Loss for Long-Tailed Object
Recognition", CVPR 2020, the softmax form given for image classification; no official detection
code).

Logits (R, K + 1). For each foreground RoI i and each tail class j != gt_i (``T_j = 1[f_j <
lambda]``), draw ``beta_ij ~ Bernoulli(gamma)``; where beta_ij = 1, class j leaves the softmax
denominator (its logit becomes -inf before CE):

    L = mean_i CE(z~_i, gt_i),    z~_ij = -inf if E_i T_j beta_ij (1 - y_ij) = 1, else z_ij

Background RoIs and the background logit are never masked. (ours) gamma = 0.9. The reference
draws beta with ``torch.rand``; the fused kernel draws the same Bernoulli(gamma) from a
counter-based hash (:mod:`lt_det.losses.fused.counter_rng`). Test: softmax.
"""
from typing import Optional, Sequence

import torch
from torch.nn import functional as F

from detectron2.config import CfgNode as CN
from detectron2.config import configurable

from lt_det.data.class_stats import ClassStats

from . import fused
from .base import LTLoss, class_stats_for, tail_classes, tail_frequency
from .registry import register_loss


def softmax_eql(logits, gt_classes, tail, gamma: float, u: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The reference Softmax EQL.

    Args:
        logits: (R, K + 1); gt_classes: (R,) in [0, K]; tail: (K,) float T_j.
        gamma: probability that a tail class leaves a foreground RoI's softmax.
        u: (R, K + 1) uniform draws, beta = 1[u < gamma] (default ``torch.rand``).
    """
    num_rois, num_logits = logits.shape
    if u is None:
        u = torch.rand(num_rois, num_logits, device=logits.device)
    y = F.one_hot(gt_classes, num_logits).float()
    E = (gt_classes < num_logits - 1).float()[:, None]
    T = torch.cat([tail, tail.new_zeros(1)])[None, :]  # the background logit is never removed
    beta = (u < gamma).float()
    removed = E * T * beta * (1 - y)
    return F.cross_entropy(logits.masked_fill(removed > 0, float("-inf")), gt_classes)


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
    def add_config(cls, cfg):
        cfg.MODEL.LT_LOSS.SOFTMAX_EQL = CN()
        # gamma: probability of removing a tail class from a foreground RoI's softmax (ours; no
        # official detection code).
        cfg.MODEL.LT_LOSS.SOFTMAX_EQL.GAMMA = 0.9

    @classmethod
    def from_config(cls, cfg, class_stats: Optional[ClassStats] = None):
        stats = class_stats_for(cfg, "softmax_eql", class_stats)
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "image_frequency": tail_frequency(cfg, stats),
            "threshold": cfg.MODEL.LT_LOSS.TAIL_THRESHOLD,
            "gamma": cfg.MODEL.LT_LOSS.SOFTMAX_EQL.GAMMA,
        }

    def loss(self, logits, gt_classes, u: Optional[torch.Tensor] = None, **extras):
        """(R, K + 1) logits, (R,) labels [, (R, K + 1) uniform draws] -> mean CE, sampled tail
        classes masked out."""
        return softmax_eql(logits, gt_classes, self.tail, self.gamma, u)

    def fused_loss(self, logits, gt_classes, **extras):
        fg = (gt_classes < self.num_classes).float()
        tail = torch.cat([self.tail, self.tail.new_zeros(1)])  # the background logit is never removed
        removal = fused.RandomRemoval(rows=fg, cols=tail, prob=self.gamma, keys=fused.draw_keys(logits.device))
        return fused.softmax_ce(logits, gt_classes, removal=removal)

    def scores(self, logits):
        """(R, K + 1) -> softmax (R, K + 1)."""
        return F.softmax(logits, dim=-1)

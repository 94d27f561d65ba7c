"""Balanced Softmax (Ren et al., "Balanced Activation for Long-tailed Visual Recognition", LVIS
Challenge 2020 report, eq. 14 / 47; "Balanced Meta-Softmax", NeurIPS 2020).

Logits (R, K + 1). The softmax is adjusted by the log of each class's training count:

    L = mean_i CE(z_i + q log n, gt_i)

with ``n_j`` the instance count of foreground class j and q = 1 (eq. 14). The report's
generalisation-bound form (eq. 28, from the margin γ_j* ∝ n_j^(-1/4) of eq. 26) has q = 1/4; it
found q = 1 best (``EXPONENT``, default 1). The background needs a count too, which the
paper does not give (there is no released detection code). (ours) ``background="sampler"``:
``n_bg = sum_j n_j (1 - P) / P`` with P = ``MODEL.ROI_HEADS.POSITIVE_FRACTION`` (the RoI sampler
draws the background (1 - P) / P times as often as all foreground together);
``background="none"`` leaves the background logit unshifted.
Test scores: the plain softmax of z (no shift).
"""
from typing import Optional, Sequence

import torch
from torch.nn import functional as F

from detectron2.config import CfgNode as CN
from detectron2.config import configurable

from lt_det.data.class_stats import ClassStats

from . import fused
from .base import LTLoss, class_stats_for, positive_counts
from .registry import register_loss

BACKGROUND_COUNTS = ("sampler", "none")


def balanced_softmax_shift(instance_count: Sequence[int], positive_fraction: float, background: str,
                           exponent: float = 1.0) -> torch.Tensor:
    """(K + 1,) additive logit shift: q log n_j, then q log n_bg ("sampler") or 0 ("none")."""
    if background not in BACKGROUND_COUNTS:
        raise ValueError(f"Unknown background count '{background}'; expected one of {BACKGROUND_COUNTS}")
    n = positive_counts(instance_count)
    if background == "sampler":
        bg = torch.log(n.sum() * (1.0 - positive_fraction) / positive_fraction).reshape(1)
    else:
        bg = n.new_zeros(1)
    return (exponent * torch.cat([n.log(), bg])).float()


@register_loss("balanced_softmax")
class BalancedSoftmax(LTLoss):
    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        instance_count: Sequence[int],
        positive_fraction: float = 0.25,
        background: str = "sampler",
        exponent: float = 1.0,
    ):
        super().__init__(num_classes)
        shift = balanced_softmax_shift(instance_count, positive_fraction, background, exponent)
        self.register_buffer("log_prior", shift, persistent=False)  # (K + 1,)

    @classmethod
    def add_config(cls, cfg):
        cfg.MODEL.LT_LOSS.BALANCED_SOFTMAX = CN()
        # Count of the background logit in CE(z + log n): "sampler" (ours): n_bg = sum_j n_j (1 - P)
        # / P with P = MODEL.ROI_HEADS.POSITIVE_FRACTION; "none": the background logit is not shifted.
        cfg.MODEL.LT_LOSS.BALANCED_SOFTMAX.BACKGROUND = "sampler"
        # q of CE(z + q log n): 1 (eq. 14, the report's choice); 0.25 is its eq. 28 bound form
        cfg.MODEL.LT_LOSS.BALANCED_SOFTMAX.EXPONENT = 1.0

    @classmethod
    def from_config(cls, cfg, class_stats: Optional[ClassStats] = None):
        stats = class_stats_for(cfg, "balanced_softmax", class_stats)
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "instance_count": stats.instance_count,
            "positive_fraction": cfg.MODEL.ROI_HEADS.POSITIVE_FRACTION,
            "background": cfg.MODEL.LT_LOSS.BALANCED_SOFTMAX.BACKGROUND,
            "exponent": cfg.MODEL.LT_LOSS.BALANCED_SOFTMAX.EXPONENT,
        }

    def loss(self, logits, gt_classes, **extras):
        """(R, K + 1) logits, (R,) labels -> mean CE(z + q log n, gt)."""
        return F.cross_entropy(logits + self.log_prior, gt_classes)

    def fused_loss(self, logits, gt_classes, **extras):
        return fused.softmax_ce(logits, gt_classes, logit_shift=self.log_prior)

    def scores(self, logits):
        """(R, K + 1) -> softmax of the unshifted logits."""
        return F.softmax(logits, dim=-1)

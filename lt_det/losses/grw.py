"""Generalised re-weighting, GRW (Zhang et al., "Distribution Alignment: A Unified Framework for
Long-tail Visual Recognition", CVPR 2021; released code: Megvii-BaseDetection/DisAlign, cvpods'
``GRWFastRCNNOutputs``): the loss of DisAlign's stage 2.

With r_c = n_c / Σ_k n_k the training share of class c (n_c: instance count) and ρ the scale:

    w_c = K · r_c^(-ρ) / Σ_k r_k^(-ρ)          (foreground weights average 1), w_bg = 1
    L = Σ_i w[gt_i] CE(z_i, gt_i) / Σ_i w[gt_i]

PyTorch's weighted mean, as released (``F.cross_entropy(weight=w)``), not the mean over RoIs of
:mod:`.weighted_softmax`. ρ = 0 is softmax CE. ρ = 0.8 in every released LVIS config. The released
counts come from a file shipped with the code (``num_shots``); lt_det reads the training set's
instance counts. Scores: softmax.
"""
from typing import Optional, Sequence

import torch
from torch.nn import functional as F

from detectron2.config import CfgNode as CN
from detectron2.config import configurable

from lt_det.data.class_stats import ClassStats

from . import fused
from .base import class_stats_for, positive_counts
from .registry import register_loss
from .weighted_softmax import WeightedSoftmaxCE


def grw_weights(instance_count: Sequence[int], rho: float) -> torch.Tensor:
    """(K,) w_c = K r_c^(-ρ) / Σ_k r_k^(-ρ), r_c = n_c / Σ n (a zero count counts as 1)."""
    n = positive_counts(instance_count)
    w = (n / n.sum()).pow(-rho)
    return w * (len(w) / w.sum())


@register_loss("grw")
class GeneralisedReweightingCE(WeightedSoftmaxCE):
    @configurable
    def __init__(self, *, num_classes: int, instance_count: Sequence[int], rho: float = 0.8):
        super().__init__(num_classes, grw_weights(instance_count, rho))

    @classmethod
    def add_config(cls, cfg):
        cfg.MODEL.LT_LOSS.GRW = CN()
        cfg.MODEL.LT_LOSS.GRW.RHO = 0.8  # ρ of w_c ∝ r_c^(-ρ) (released LVIS configs: GRW_SCALE 0.8)

    @classmethod
    def from_config(cls, cfg, class_stats: Optional[ClassStats] = None):
        stats = class_stats_for(cfg, "grw", class_stats)
        return {"num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES, "instance_count": stats.instance_count,
                "rho": cfg.MODEL.LT_LOSS.GRW.RHO}

    def loss(self, logits, gt_classes, **extras):
        """(R, K + 1) logits, (R,) labels -> Σ_i w[gt_i] CE_i / Σ_i w[gt_i]."""
        return F.cross_entropy(logits, gt_classes, weight=self.class_weights)

    def fused_loss(self, logits, gt_classes, **extras):
        row_weights = self.class_weights[gt_classes]
        # the fused kernel averages w[gt_i] CE_i over the R RoIs; GRW divides by Σ w[gt_i] instead
        return fused.softmax_ce(logits, gt_classes, row_weights=row_weights) * (len(gt_classes) / row_weights.sum())

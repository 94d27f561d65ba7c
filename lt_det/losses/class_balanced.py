"""Class-balanced softmax CE (Cui et al., "Class-Balanced Loss Based on Effective Number of
Samples", CVPR 2019).

The effective number of class j is ``(1 - beta^n_j) / (1 - beta)`` (n_j = instance count); its
weight ``w_j = (1 - beta) / (1 - beta^n_j)``, normalised so that ``sum_j w_j = K``; beta = 0.999.
Optionally truncated to ``[lo, hi]`` after the normalisation (BAGS supplementary §1.2 adds the
truncation of its re-weighting, [0.01, 5], to these weights: ``CLASS_BALANCED.CLIP``).
Loss: :mod:`.weighted_softmax` with these weights, ``w_bg = 1``. Scores: softmax.
"""
from typing import Optional, Sequence, Tuple

import torch

from detectron2.config import CfgNode as CN
from detectron2.config import configurable

from lt_det.data.class_stats import ClassStats

from .base import class_stats_for, positive_counts
from .registry import register_loss
from .weighted_softmax import WeightedSoftmaxCE


def class_balanced_weights(instance_count: Sequence[int], beta: float, clip: Tuple[float, ...] = ()) -> torch.Tensor:
    """(K,) w_j = (1 - beta) / (1 - beta^{n_j}), normalised so that sum_j w_j = K, then clamped to
    ``clip = (lo, hi)`` when given (empty: no truncation)."""
    n = positive_counts(instance_count)
    w = (1.0 - beta) / (1.0 - torch.pow(beta, n))
    w = w * (len(w) / w.sum())
    if clip:
        if len(clip) != 2 or not 0 <= clip[0] <= clip[1]:
            raise ValueError(f"MODEL.LT_LOSS.CLASS_BALANCED.CLIP must be () or (lo, hi) with 0 <= lo <= hi, got {clip}")
        w = w.clamp(*clip)
    return w


@register_loss("class_balanced")
class ClassBalancedCE(WeightedSoftmaxCE):
    @configurable
    def __init__(self, *, num_classes: int, instance_count: Sequence[int], beta: float = 0.999,
                 clip: Tuple[float, ...] = ()):
        super().__init__(num_classes, class_balanced_weights(instance_count, beta, tuple(clip)))

    @classmethod
    def add_config(cls, cfg):
        cfg.MODEL.LT_LOSS.CLASS_BALANCED = CN()
        # beta of the effective number (1 - beta^n) / (1 - beta) (Cui et al.; 0.999 is their
        # best on long-tailed CIFAR and the usual detection value).
        cfg.MODEL.LT_LOSS.CLASS_BALANCED.BETA = 0.999
        # Truncation (lo, hi) of the normalised weights; () = none (Cui et al.). BAGS's supplementary
        # (§1.2, Fig. 1) truncates them as its re-weighting: (0.01, 5.0).
        cfg.MODEL.LT_LOSS.CLASS_BALANCED.CLIP = ()

    @classmethod
    def from_config(cls, cfg, class_stats: Optional[ClassStats] = None):
        stats = class_stats_for(cfg, "class_balanced", class_stats)
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "instance_count": stats.instance_count,
            "beta": cfg.MODEL.LT_LOSS.CLASS_BALANCED.BETA,
            "clip": cfg.MODEL.LT_LOSS.CLASS_BALANCED.CLIP,
        }

"""Inverse-frequency re-weighted softmax CE (Li et al., "Overcoming Classifier Imbalance for
Long-tail Object Detection with Balanced Group Softmax", CVPR 2020, supplementary; released code:
FishYuLi/BalancedGroupSoftmax, ``get_cate_weight``).

``alpha_j = 1 / n_j`` (n_j = instance count of class j), divided by its mean over the K classes and
clipped to [0.1, 5] (the released code; the supplementary's text says [0.01, 5], which gives a
different weight to 566 of LVIS v1's 1203 classes). Loss: :mod:`.weighted_softmax` with these
weights, ``w_bg = 1``. Scores: softmax.
"""
from typing import Optional, Sequence, Tuple

import torch

from detectron2.config import CfgNode as CN
from detectron2.config import configurable

from lt_det.data.class_stats import ClassStats

from .base import class_stats_for, positive_counts
from .registry import register_loss
from .weighted_softmax import WeightedSoftmaxCE


def inverse_frequency_weights(instance_count: Sequence[int], clip: Tuple[float, float]) -> torch.Tensor:
    """(K,) alpha_j = 1 / n_j, divided by its mean over the K classes, clipped to ``clip``."""
    alpha = 1.0 / positive_counts(instance_count)
    return (alpha / alpha.mean()).clamp(*clip)


@register_loss("inverse_frequency")
class InverseFrequencyCE(WeightedSoftmaxCE):
    @configurable
    def __init__(self, *, num_classes: int, instance_count: Sequence[int], clip: Tuple[float, float] = (0.1, 5.0)):
        super().__init__(num_classes, inverse_frequency_weights(instance_count, tuple(clip)))

    @classmethod
    def add_config(cls, cfg):
        cfg.MODEL.LT_LOSS.INVERSE_FREQUENCY = CN()
        # alpha_j = 1 / instance_count_j over its mean, clipped to this range: (0.1, 5) in BAGS's
        # released get_cate_weight; its supplementary's text says (0.01, 5).
        cfg.MODEL.LT_LOSS.INVERSE_FREQUENCY.CLIP = (0.1, 5.0)

    @classmethod
    def from_config(cls, cfg, class_stats: Optional[ClassStats] = None):
        stats = class_stats_for(cfg, "inverse_frequency", class_stats)
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "instance_count": stats.instance_count,
            "clip": cfg.MODEL.LT_LOSS.INVERSE_FREQUENCY.CLIP,
        }

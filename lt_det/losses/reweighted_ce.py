"""Class-weighted losses: inverse-frequency and class-balanced re-weighting (SPEC section 1).

Softmax CE: logits (R, K + 1). Loss = mean over RoIs of ``w[gt_i] * CE_i`` (each RoI's CE times
its class weight, averaged over RoIs as mmdetection's ``avg_factor`` does; not PyTorch's weighted
mean, which divides by the summed weights). ``w_bg = 1``. Scores = softmax.

Class-balanced focal (Cui et al.'s other variant): the sigmoid focal loss with every term of RoI i
weighted by ``w[gt_i]`` and no alpha_t (their code passes the class weights as alpha), summed over
(RoI, class) and divided by R; logits and scores as the ``focal`` loss.
"""
from typing import Sequence, Tuple

import torch
from torch.nn import functional as F

from detectron2.config import configurable

from .base import BinaryLoss, LTLoss, class_stats_for, positive_counts
from .functional import sigmoid_focal, softmax_ce, weighted_binary_loss
from .registry import register_loss


class WeightedSoftmaxCE(LTLoss):
    def __init__(self, num_classes: int, class_weights: torch.Tensor):
        super().__init__(num_classes)
        weights = torch.cat([class_weights.float(), class_weights.new_ones(1).float()])
        self.register_buffer("class_weights", weights, persistent=False)  # (K + 1,), bg = 1

    def loss(self, logits, gt_classes, **extras):
        """(R, K + 1) logits, (R,) labels -> mean_i w[gt_i] CE_i."""
        return softmax_ce(logits, gt_classes, row_weights=self.class_weights[gt_classes])

    def scores(self, logits):
        """(R, K + 1) -> softmax (R, K + 1)."""
        return F.softmax(logits, dim=-1)


def inverse_frequency_weights(instance_count: Sequence[int], clip: Tuple[float, float]) -> torch.Tensor:
    """alpha_j = 1 / n_j, divided by its mean over the K classes, clipped to ``clip`` (BAGS supp.)."""
    alpha = 1.0 / positive_counts(instance_count)
    return (alpha / alpha.mean()).clamp(*clip)


def class_balanced_weights(instance_count: Sequence[int], beta: float) -> torch.Tensor:
    """w_j = (1 - beta) / (1 - beta^{n_j}), normalised so that sum_j w_j = K (Cui et al.)."""
    n = positive_counts(instance_count)
    w = (1.0 - beta) / (1.0 - torch.pow(beta, n))
    return w * (len(w) / w.sum())


@register_loss("inverse_frequency")
class InverseFrequencyCE(WeightedSoftmaxCE):
    @configurable
    def __init__(self, *, num_classes: int, instance_count: Sequence[int], clip: Tuple[float, float] = (0.01, 5.0)):
        super().__init__(num_classes, inverse_frequency_weights(instance_count, tuple(clip)))

    @classmethod
    def from_config(cls, cfg):
        stats = class_stats_for(cfg, "inverse_frequency")
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "instance_count": stats.instance_count,
            "clip": cfg.MODEL.LT_LOSS.INVERSE_FREQUENCY.CLIP,
        }


@register_loss("class_balanced")
class ClassBalancedCE(WeightedSoftmaxCE):
    @configurable
    def __init__(self, *, num_classes: int, instance_count: Sequence[int], beta: float = 0.999):
        super().__init__(num_classes, class_balanced_weights(instance_count, beta))

    @classmethod
    def from_config(cls, cfg):
        stats = class_stats_for(cfg, "class_balanced")
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "instance_count": stats.instance_count,
            "beta": cfg.MODEL.LT_LOSS.CLASS_BALANCED.BETA,
        }


@register_loss("class_balanced_focal")
class ClassBalancedFocal(BinaryLoss):
    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        instance_count: Sequence[int],
        beta: float = 0.999,
        gamma: float = 2.0,
        background_logit: bool = True,
        prior_prob: float = 0.0,
    ):
        super().__init__(num_classes, "sigmoid", prior_prob, background_logit)
        self.focal = sigmoid_focal(alpha=-1.0, gamma=gamma)  # alpha < 0: no alpha_t
        weights = class_balanced_weights(instance_count, beta)
        self.register_buffer("class_weights", torch.cat([weights.float(), weights.new_ones(1).float()]),
                             persistent=False)  # (K + 1,), bg = 1

    @classmethod
    def from_config(cls, cfg):
        stats = class_stats_for(cfg, "class_balanced_focal")
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "instance_count": stats.instance_count,
            "beta": cfg.MODEL.LT_LOSS.CLASS_BALANCED.BETA,
            "gamma": cfg.MODEL.LT_LOSS.FOCAL.GAMMA,
            "background_logit": cfg.MODEL.LT_LOSS.SIGMOID.BACKGROUND_LOGIT,
            "prior_prob": cfg.MODEL.LT_LOSS.SIGMOID.PRIOR_PROB,
        }

    def loss(self, logits, gt_classes, **extras):
        """(R, K [+ 1]) logits, (R,) labels -> sum w[gt_i] * focal_ij / R."""
        return weighted_binary_loss(logits, gt_classes, self.num_classes, self.focal,
                                    row_weights=self.class_weights[gt_classes])

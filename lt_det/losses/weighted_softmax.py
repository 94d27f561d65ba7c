"""Softmax CE with a weight per ground-truth class: the base of the re-weighting losses.

Logits (R, K + 1). With class weights ``w`` (K + 1,), ``w_bg = 1``:

    L = mean_i w[gt_i] CE(z_i, gt_i)

each RoI's CE times its class weight, averaged over the R RoIs (mmdetection's ``avg_factor``; not
PyTorch's weighted mean, which divides by the summed weights). Scores: softmax.
"""
import torch
from torch.nn import functional as F

from . import fused
from .base import LTLoss


class WeightedSoftmaxCE(LTLoss):
    def __init__(self, num_classes: int, class_weights: torch.Tensor):
        """``class_weights``: (K,) weights of the foreground classes."""
        super().__init__(num_classes)
        weights = torch.cat([class_weights.float(), class_weights.new_ones(1).float()])
        self.register_buffer("class_weights", weights, persistent=False)  # (K + 1,), bg = 1

    def loss(self, logits, gt_classes, **extras):
        """(R, K + 1) logits, (R,) labels -> mean_i w[gt_i] CE_i."""
        return (self.class_weights[gt_classes] * F.cross_entropy(logits, gt_classes, reduction="none")).mean()

    def fused_loss(self, logits, gt_classes, **extras):
        return fused.softmax_ce(logits, gt_classes, row_weights=self.class_weights[gt_classes])

    def scores(self, logits):
        """(R, K + 1) -> softmax (R, K + 1)."""
        return F.softmax(logits, dim=-1)

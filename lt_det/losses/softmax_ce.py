"""Softmax cross-entropy: detectron2's ``FastRCNNOutputLayers`` classification loss.

Logits (R, K + 1), background last. ``L = mean_i CE(z_i, gt_i)``; scores = softmax.
"""
import torch
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import cross_entropy

from .base import LTLoss
from .registry import register_loss


@register_loss("softmax_ce")
class SoftmaxCE(LTLoss):
    """detectron2's own loss and inference, unchanged (the default ``MODEL.LT_LOSS.NAME``)."""

    @configurable
    def __init__(self, *, num_classes: int):
        super().__init__(num_classes)

    @classmethod
    def from_config(cls, cfg):
        return {"num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES}

    def loss(self, logits, gt_classes, **extras):
        """(R, K + 1) logits, (R,) labels -> mean CE (detectron2's own ``cross_entropy``)."""
        return cross_entropy(logits, gt_classes, reduction="mean")

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """(R, K + 1) -> softmax (R, K + 1)."""
        return F.softmax(logits, dim=-1)

    def predict_classes(self, logits: torch.Tensor) -> torch.Tensor:
        """(R,) argmax of the logits, exactly as detectron2 logs it."""
        return logits.argmax(dim=1)

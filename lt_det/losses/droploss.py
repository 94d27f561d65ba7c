"""DropLoss (Hsieh et al., "DropLoss for Long-Tail Instance Segmentation", AAAI 2021; released
code: timy90022/DropLoss), the weighting of GOL.

Logits (R, K), no background logit. ``T_j = 1[f_j < lambda]``, ``fg_i = 1[gt_i != K]``;
``ratio`` = share of this step's foreground RoIs whose class is a tail class. With
``U ~ Uniform(0, 1)`` of shape (R, K):

    D_ij = 1[U_ij (1 - fg_i) > ratio],    w_ij = 1 - (D_ij + fg_i) T_j (1 - y_ij),
    L = sum_ij w_ij l(z_ij, y_ij) / R

foreground RoIs behave exactly like EQL; on background RoIs each tail-class negative is dropped
with probability 1 - ratio. With no foreground RoI nothing is dropped. ``l`` is BCE or, with
``activation="gumbel"`` (GOL), the Gumbel BCE. The reference draws U with ``torch.rand`` as the
released code does; the fused kernel draws it from a counter-based hash inside the kernel
(:mod:`lt_det.losses.fused.counter_rng`), never materialised at (R, K).
Test: the activation and a zero background column.
"""
from typing import Optional, Sequence

import torch

from detectron2.config import configurable

from lt_det.data.class_stats import ClassStats

from . import fused
from .base import BinaryLoss, class_stats_for, tail_classes, tail_frequency
from .functional import binary_cross_entropy, onehot_targets
from .registry import register_loss


@register_loss("droploss")
class DropLoss(BinaryLoss):
    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        image_frequency: Sequence[float],
        threshold: float = 0.0011,
        activation: str = "sigmoid",
        prior_prob: float = 0.001,
    ):
        super().__init__(num_classes, activation, prior_prob, background_logit=False)
        tail = tail_classes(image_frequency, threshold, "DropLoss")
        self.register_buffer("tail", tail, persistent=False)  # (K,) float 0 / 1: T_j

    @classmethod
    def from_config(cls, cfg, class_stats: Optional[ClassStats] = None):
        stats = class_stats_for(cfg, "droploss", class_stats)
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "image_frequency": tail_frequency(cfg, stats),
            "threshold": cfg.MODEL.LT_LOSS.TAIL_THRESHOLD,
            "activation": cfg.MODEL.LT_LOSS.ACTIVATION,
        }

    def tail_ratio(self, gt_classes) -> Optional[torch.Tensor]:
        """0-d share of the step's foreground RoIs whose class is tail; None without foreground."""
        fg_labels = gt_classes[gt_classes < self.num_classes]
        return self.tail[fg_labels].mean() if len(fg_labels) else None

    def loss(self, logits, gt_classes, u: Optional[torch.Tensor] = None, **extras):
        """(R, K) logits, (R,) labels [, (R, K) uniform draws U] -> sum w l(z, y) / R."""
        y = onehot_targets(gt_classes, self.num_classes)
        l = binary_cross_entropy(logits, y, self.activation)
        ratio = self.tail_ratio(gt_classes)
        if ratio is None:
            return l.sum() / len(logits)
        if u is None:
            u = torch.rand(logits.shape, device=logits.device)
        fg = (gt_classes < self.num_classes).float()[:, None]
        D = (u * (1 - fg) > ratio).float()
        w = 1 - (D + fg) * self.tail[None, :] * (1 - y)
        return (w * l).sum() / len(logits)

    def fused_loss(self, logits, gt_classes, **extras):
        ratio = self.tail_ratio(gt_classes)
        if ratio is None:
            return fused.weighted_binary_loss(logits, gt_classes, activation=self.activation)
        fg = (gt_classes < self.num_classes).float()
        # I = (D + fg) T with D = 1[U (1 - fg) > ratio]: on a foreground row D = 0, so I = T; on a
        # background row I = 1[U > ratio] T.
        drop = fused.RandomDrop(rows=1.0 - fg, ratio=ratio, keys=fused.draw_keys(logits.device))
        return fused.weighted_binary_loss(
            logits, gt_classes, activation=self.activation, ignore_cols=self.tail, ignore_rows=fg, drop=drop
        )

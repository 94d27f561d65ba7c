"""DropLoss (Hsieh et al., AAAI 2021; SPEC section 4), the weighting of GOL.

Logits (R, K), no background logit. ``T_j = 1[f_j < lambda]``, ``fg_i = 1[gt_i != bg]``;
``ratio`` = share of this step's foreground RoIs whose class is a tail class. With
``U ~ Uniform(0, 1)`` of shape (R, K), ``D_ij = 1[U_ij (1 - fg_i) > ratio]`` and
``w_ij = 1 - (D_ij + fg_i) T_j (1 - y_ij)``: foreground RoIs behave exactly like EQL; on
background RoIs each tail-class negative is dropped with probability 1 - ratio. With no
foreground RoI nothing is dropped. ``L = sum w * l(z, y) / R`` with BCE or (GOL) the Gumbel BCE.
U comes from a counter-based hash (:mod:`lt_det.losses.counter_rng`) inside the fused kernel:
the released code's distribution, not torch.rand's stream, and never materialised at (R, K).
Test: the activation and a zero background column.
"""
from typing import Sequence

from detectron2.config import configurable

from .base import BinaryLoss, class_stats_for, tail_classes
from .counter_rng import draw_keys
from .functional import RandomDrop, weighted_binary_loss
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
        self.register_buffer("tail", tail, persistent=False)  # (K,) float 0 / 1

    @classmethod
    def from_config(cls, cfg):
        stats = class_stats_for(cfg, "droploss")
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "image_frequency": stats.image_frequency,
            "threshold": cfg.MODEL.LT_LOSS.TAIL_THRESHOLD,
            "activation": cfg.MODEL.LT_LOSS.ACTIVATION,
        }

    def loss(self, logits, gt_classes, **extras):
        """(R, K) logits, (R,) labels -> sum w l(z, y) / R."""
        is_fg = gt_classes < self.num_classes
        if not is_fg.any():
            return weighted_binary_loss(logits, gt_classes, activation=self.activation)
        ratio = self.tail[gt_classes[is_fg]].mean()
        fg = is_fg.float()
        # I = (D + fg) T with D = 1[U (1 - fg) > ratio]: on a foreground row D = 0, so I = T; on a
        # background row I = 1[U > ratio] T.
        drop = RandomDrop(rows=1.0 - fg, ratio=ratio, keys=draw_keys(logits.device))
        return weighted_binary_loss(
            logits, gt_classes, activation=self.activation, ignore_cols=self.tail, ignore_rows=fg, drop=drop
        )

"""DropLoss (Hsieh et al., AAAI 2021; SPEC section 4), the weighting of GOL.

Logits (R, K), no background logit. ``T_j = 1[f_j < lambda]``, ``fg_i = 1[gt_i != bg]``;
``ratio`` = share of this step's foreground RoIs whose class is a tail class. With
``U ~ Uniform(0, 1)`` of shape (R, K), ``D_ij = 1[U_ij (1 - fg_i) > ratio]`` and
``w_ij = 1 - (D_ij + fg_i) T_j (1 - y_ij)``: foreground RoIs behave exactly like EQL; on
background RoIs each tail-class negative is dropped with probability 1 - ratio. With no
foreground RoI nothing is dropped. ``L = sum w * l(z, y) / R`` with BCE or (GOL) the Gumbel BCE.
U is drawn one row block at a time (the same distribution, never materialised at (R, K)).
Test: the activation and a zero background column.
"""
from typing import Sequence

import torch

from detectron2.config import configurable

from .base import BinaryLoss, class_stats_for, tail_classes
from .functional import weighted_binary_loss
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
        self.register_buffer("tail_index", tail.nonzero().squeeze(1), persistent=False)  # (T,)

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
        fg = is_fg.float()[:, None]
        # U is drawn block by block, each block from its own generator seeded by one draw of the
        # global one: reproducible under torch.manual_seed.
        seed = int(torch.randint(1 << 62, (1,)))

        def ignore(rows):
            # I = (D + fg) T with D = 1[U (1 - fg) > ratio]. On a foreground row D = 0, so I = T;
            # on a background row I = 1[U > ratio] T. U is therefore only needed, and only drawn,
            # for background rows x tail columns (the generator is the cost of this loss).
            fg_rows = fg[rows]
            mask = fg_rows * self.tail  # (B, K): T on foreground rows, 0 elsewhere
            bg = (fg_rows[:, 0] == 0).nonzero().squeeze(1)
            if len(bg) and len(self.tail_index):
                generator = torch.Generator(device=logits.device)
                generator.manual_seed(seed + rows.start)
                u = torch.rand(len(bg), len(self.tail_index), generator=generator, device=logits.device)
                dropped = torch.zeros(len(bg), self.num_classes, device=logits.device)
                dropped[:, self.tail_index] = u.sub_(ratio).sign_().clamp_(min=0.0)  # 1[U > ratio]
                mask.index_copy_(0, bg, dropped)
            return mask

        return weighted_binary_loss(logits, gt_classes, activation=self.activation, ignore=ignore)

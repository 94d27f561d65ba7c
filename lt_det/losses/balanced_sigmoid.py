"""Balanced Sigmoid (Ren et al., "Balanced Activation for Long-tailed Visual Recognition", LVIS
Challenge 2020 report; released code: jiawei-ren/BalancedMetaSoftmax-InstanceSeg, LVIS v0.5).

Logits (R, K), no background logit; init N(0, 0.01), bias -log((1 - pi) / pi), pi = 0.001.
Each logit is shifted by the class's prior before the sigmoid, ``z'_ij = z_ij + s_ij``:

* ``form="released"`` (default, the released detection code): foreground RoIs only,
  ``s_ij = E_i logit(phi_j) = E_i log(phi_j / (1 - phi_j))`` with ``phi_j = f_j`` the image
  frequency and ``E_i = 1[gt_i != K]``; background RoIs keep z.
* ``form="paper"`` (eq. 48): every RoI, ``s_j = log(n_j / (n - n_j)) + log(K - 1)`` with instance
  counts n_j and ``n = sum_j n_j``.

``L = sum_ij BCE(z'_ij, y_ij) / R``. Test: sigma(z) (no shift) and a zero background column.
The paper trains it as a decoupled stage 2 on an RFS baseline (``DECOUPLED.*``).
"""
from typing import Optional, Sequence

import torch

from detectron2.config import CfgNode as CN
from detectron2.config import configurable

from lt_det.data.class_stats import ClassStats

from . import fused
from .base import BinaryLoss, class_stats_for, positive_counts
from .functional import binary_cross_entropy, onehot_targets
from .registry import register_loss

FORMS = ("released", "paper")


def balanced_sigmoid_shift(form: str, image_frequency: Sequence[float], instance_count: Sequence[int]) -> torch.Tensor:
    """(K,) logit shift of the chosen form (see the module docstring)."""
    if form == "released":
        phi = torch.as_tensor(image_frequency, dtype=torch.float64).clamp(1e-12, 1.0 - 1e-12)
        return torch.log(phi / (1.0 - phi)).float()
    if form == "paper":
        n = positive_counts(instance_count)
        return (torch.log(n / (n.sum() - n)) + torch.log(n.new_tensor(len(n) - 1.0))).float()
    raise ValueError(f"Unknown Balanced Sigmoid form '{form}'; expected one of {FORMS}")


@register_loss("balanced_sigmoid")
class BalancedSigmoid(BinaryLoss):
    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        image_frequency: Sequence[float],
        instance_count: Sequence[int],
        form: str = "released",
        prior_prob: float = 0.001,
    ):
        super().__init__(num_classes, "sigmoid", prior_prob, background_logit=False)
        self.form = form
        self.register_buffer(
            "logit_shift", balanced_sigmoid_shift(form, image_frequency, instance_count), persistent=False
        )

    @classmethod
    def add_config(cls, cfg):
        cfg.MODEL.LT_LOSS.BALANCED_SIGMOID = CN()
        # "released" (BALMS code): shift fg RoIs by logit(f_j); "paper" (eq. 48): shift every RoI by
        # log(n_j / (n - n_j)) + log(K - 1).
        cfg.MODEL.LT_LOSS.BALANCED_SIGMOID.FORM = "released"

    @classmethod
    def from_config(cls, cfg, class_stats: Optional[ClassStats] = None):
        stats = class_stats_for(cfg, "balanced_sigmoid", class_stats)
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "image_frequency": stats.image_frequency,
            "instance_count": stats.instance_count,
            "form": cfg.MODEL.LT_LOSS.BALANCED_SIGMOID.FORM,
        }

    def shifted_rows(self, gt_classes):
        """(R,) float: 1 for the RoIs whose logits are shifted (foreground only, or every RoI)."""
        if self.form == "released":
            return (gt_classes < self.num_classes).float()
        return torch.ones(len(gt_classes), device=gt_classes.device)

    def loss(self, logits, gt_classes, **extras):
        """(R, K) logits, (R,) labels -> sum_ij BCE(z_ij + s_ij, y_ij) / R."""
        y = onehot_targets(gt_classes, self.num_classes)
        z = logits + self.shifted_rows(gt_classes)[:, None] * self.logit_shift
        return binary_cross_entropy(z, y).sum() / len(z)

    def fused_loss(self, logits, gt_classes, **extras):
        return fused.weighted_binary_loss(logits, gt_classes, logit_shift=self.logit_shift,
                                          shift_rows=self.shifted_rows(gt_classes))

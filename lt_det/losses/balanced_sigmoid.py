"""Balanced Sigmoid (Ren et al., BALMS; SPEC section 2).

Logits (R, K), no background logit; init N(0, 0.01), bias -log((1 - pi) / pi), pi = 0.001.

* ``form="released"`` (default, the BALMS detection code): on foreground RoIs only, every class
  logit is shifted by ``logit(phi_j) = -log((1 - phi_j) / phi_j)`` with ``phi_j = f_j`` the
  image frequency; background RoIs keep z.
* ``form="paper"`` (equation 48): every RoI's logit j is shifted by
  ``log(n_j / (n - n_j)) + log(K - 1)`` with instance counts n_j and n = sum_j n_j.

Loss ``sum BCE(z', y) / R``. Test: sigma(z) (no shift) and a zero background column.
"""
from typing import Sequence

import torch

from detectron2.config import configurable

from .base import BinaryLoss, class_stats_for, positive_counts
from .functional import weighted_binary_loss
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
    def from_config(cls, cfg):
        stats = class_stats_for(cfg, "balanced_sigmoid")
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "image_frequency": stats.image_frequency,
            "instance_count": stats.instance_count,
            "form": cfg.MODEL.LT_LOSS.BALANCED_SIGMOID.FORM,
        }

    def loss(self, logits, gt_classes, **extras):
        """(R, K) logits, (R,) labels -> sum BCE(z + shift, y) / R."""
        rows = (gt_classes < self.num_classes).float() if self.form == "released" else None
        return weighted_binary_loss(
            logits, gt_classes, activation=self.activation, logit_shift=self.logit_shift, shift_rows=rows
        )

"""Federated loss (Zhou et al., "Probabilistic two-stage detection", 2021, CenterNet2's LVIS
recipe; released code: xingyizhou/CenterNet2, and detectron2 main's ``use_fed_loss`` in
``detectron2/modeling/roi_heads/fast_rcnn.py``).

Logits (R, K + 1) with the sigmoid (the loss uses the K class logits; the background logit gets
no gradient), (R, K) with the Gumbel activation (GOL's layout for every Gumbel-family loss).
Once per step: ``S = unique(gt)`` (background included when present); if ``|S| < num_sampled``
(50), ``num_sampled - |S|`` more foreground classes are drawn with
``torch.multinomial(w, ., replacement=False)``, ``w_c = image_count_c ^ power`` (power 0.5) with
zeros at S and at the background: the same call as detectron2 main's ``get_fed_loss_classes``,
so the same RNG state draws the same classes. (ours) Where main would fail because fewer classes
are left than requested (datasets with < 50 classes), every remaining class is taken.
``L = sum_{i, j in S} l(z_ij, y_ij) / R`` with BCE (default) or the Gumbel BCE (GOL's Table 6).
Bias init 0 (detectron2) or a prior (Detic / CenterNet2: 0.01). Test: the activation over the
logits (detectron2 drops the background column), with a zero background column for (R, K).
"""
from typing import Optional, Sequence

import numpy as np
import torch

from detectron2.config import CfgNode as CN
from detectron2.config import configurable

from lt_det.data.class_stats import ClassStats

from . import fused
from .base import BinaryLoss, class_stats_for
from .functional import binary_cross_entropy, onehot_targets
from .registry import register_loss


def federated_classes(gt_classes: torch.Tensor, class_weights: torch.Tensor, num_sampled: int) -> torch.Tensor:
    """(K,) float mask of the classes in this step's loss.

    Args:
        gt_classes: (R,) labels in [0, K].
        class_weights: (K,) sampling weights of the foreground classes.
        num_sampled: size of S after sampling (classes already in S count).
    """
    num_classes = class_weights.numel()
    present = torch.unique(gt_classes)
    chosen = present
    if len(present) < num_sampled:
        prob = class_weights.new_zeros(num_classes + 1, dtype=torch.float32)
        prob[:num_classes] = class_weights.float()
        prob[present] = 0.0
        num_draws = min(num_sampled - len(present), int((prob > 0).sum()))
        if num_draws > 0:
            chosen = torch.cat([present, torch.multinomial(prob, num_draws, replacement=False)])
    mask = class_weights.new_zeros(num_classes + 1, dtype=torch.float32)
    mask[chosen] = 1.0
    return mask[:num_classes]


@register_loss("federated")
class FederatedLoss(BinaryLoss):
    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        image_count: Sequence[int],
        num_sampled: int = 50,
        freq_weight_power: float = 0.5,
        activation: str = "sigmoid",
        prior_prob: float = 0.0,
    ):
        super().__init__(num_classes, activation, prior_prob, background_logit=activation != "gumbel")
        self.num_sampled = num_sampled
        weights = torch.as_tensor(np.asarray(image_count), dtype=torch.float32) ** freq_weight_power
        self.register_buffer("class_weights", weights, persistent=False)  # (K,)

    @classmethod
    def add_config(cls, cfg):
        # The sampled-class count and weight power are detectron2 main's own keys
        # (MODEL.ROI_BOX_HEAD.FED_LOSS_*), added by lt_det.losses.config where this detectron2 lacks them.
        cfg.MODEL.LT_LOSS.FEDERATED = CN()
        # pi of the classifier bias init; 0 keeps detectron2 main's bias 0, Detic / CenterNet2 use 0.01.
        cfg.MODEL.LT_LOSS.FEDERATED.PRIOR_PROB = 0.0

    @classmethod
    def from_config(cls, cfg, class_stats: Optional[ClassStats] = None):
        stats = class_stats_for(cfg, "federated", class_stats)
        head = cfg.MODEL.ROI_BOX_HEAD
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "image_count": stats.image_count,
            "num_sampled": head.FED_LOSS_NUM_CLASSES,
            "freq_weight_power": head.FED_LOSS_FREQ_WEIGHT_POWER,
            "activation": cfg.MODEL.LT_LOSS.ACTIVATION,
            "prior_prob": cfg.MODEL.LT_LOSS.FEDERATED.PRIOR_PROB,
        }

    def loss(self, logits, gt_classes, **extras):
        """(R, K + 1) or (R, K) logits, (R,) labels -> sum_{j in S} l(z_ij, y_ij) / R."""
        m = federated_classes(gt_classes, self.class_weights, self.num_sampled)
        y = onehot_targets(gt_classes, self.num_classes)
        l = binary_cross_entropy(self.class_logits(logits), y, self.activation)
        return (m[None, :] * l).sum() / len(logits)

    def fused_loss(self, logits, gt_classes, **extras):
        unsampled = 1.0 - federated_classes(gt_classes, self.class_weights, self.num_sampled)
        return fused.weighted_binary_loss(logits, gt_classes, activation=self.activation,
                                          num_columns=self.num_classes, ignore_cols=unsampled)

"""Equalization Loss, EQL (Tan et al., "Equalization Loss for Long-Tailed Object Recognition",
CVPR 2020, eq. 7; released code: tztztztztz/eql.detectron2), with the sigmoid or GOL's Gumbel
activation.

Logits (R, K), no background logit; init N(0, 0.01), bias -6.9068 (pi = 0.001) for sigmoid.
``E_i = 1[gt_i != K]`` (the paper's E(r)), ``T_j = 1[f_j < lambda]`` (T_lambda, f = image
frequency) and

    w_ij = 1 - E_i T_j (1 - y_ij),    L = sum_ij w_ij BCE(z_ij, y_ij) / R

on foreground RoIs the negative terms of tail classes are removed; background RoIs keep every
term. lambda: 0.0011 on LVIS v1 (815 tail classes), 0.00177 on v0.5 (915 = rare + common).
Without the excluding function E(r) (the paper's Table 4 ablation, ``EXCLUDE_BACKGROUND False``),
E_i = 1 for every RoI: background RoIs lose their tail negatives too (the paper: 0.6 AP lower).

Image-label option (the paper's LVIS rule, not in the released code): a class verified in the
RoI's image (LVIS ``pos_category_ids`` or ``neg_category_ids``) is never ignored:
``w_ij = 1 - E_i T_j (1 - V_ij) (1 - y_ij)``. V comes from the proposals' ``gt_image_labels``
field, (R, K) bool, which :class:`lt_det.data.image_labels.ImageLabelDatasetMapper` provides.
Test: sigma(z) (or the Gumbel CDF) and a zero background column.
"""
from typing import List, Optional, Sequence

import torch

from detectron2.config import CfgNode as CN
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.structures import Instances

from lt_det.data.class_stats import ClassStats
from lt_det.data.image_labels import IMAGE_LABELS_FIELD

from . import fused
from .base import BinaryLoss, class_stats_for, tail_classes
from .functional import binary_cross_entropy, onehot_targets
from .registry import register_loss


def verified_classes(proposals: List[Instances], num_classes: int) -> torch.Tensor:
    """(R, K) bool: True where class j is verified present or absent in RoI i's image.

    An image without gt has only background RoIs, whose weights the labels do not change: zeros.
    """
    rows = []
    for i, p in enumerate(proposals):
        if p.has(IMAGE_LABELS_FIELD):
            rows.append(p.get(IMAGE_LABELS_FIELD))
        elif (p.gt_classes < num_classes).any():
            raise KeyError(
                f"EQL with MODEL.LT_LOSS.EQL.USE_IMAGE_LABELS needs the proposals' "
                f"'{IMAGE_LABELS_FIELD}' field (missing in image {i} of the batch): train with "
                "lt_det.data.image_labels.ImageLabelDatasetMapper on a dataset whose dicts carry "
                "'neg_category_ids', and LTStandardROIHeads or LTCascadeROIHeads (their labelling "
                "copies the field to the proposals)."
            )
        else:
            rows.append(torch.zeros(len(p), num_classes, dtype=torch.bool, device=p.gt_classes.device))
    return cat(rows, dim=0)


@register_loss("eql")
class EqualizationLoss(BinaryLoss):
    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        image_frequency: Sequence[float],
        threshold: float = 0.0011,
        use_image_labels: bool = False,
        exclude_background: bool = True,
        activation: str = "sigmoid",
        prior_prob: float = 0.001,
    ):
        super().__init__(num_classes, activation, prior_prob, background_logit=False)
        self.use_image_labels = use_image_labels
        self.exclude_background = exclude_background
        tail = tail_classes(image_frequency, threshold, "EQL")
        self.register_buffer("tail", tail, persistent=False)  # (K,) float 0 / 1: T_j

    @classmethod
    def add_config(cls, cfg):
        cfg.MODEL.LT_LOSS.EQL = CN()
        # The paper's LVIS rule (not in the released code): never ignore a class in the image's
        # pos_category_ids or neg_category_ids. Needs lt_det.data.image_labels.ImageLabelDatasetMapper.
        cfg.MODEL.LT_LOSS.EQL.USE_IMAGE_LABELS = False
        # E(r), the excluding function (paper eq. 7 and Table 4): True keeps every term of background
        # RoIs (the paper's and the released EQL); False applies the tail rule to background RoIs too.
        cfg.MODEL.LT_LOSS.EQL.EXCLUDE_BACKGROUND = True

    @classmethod
    def from_config(cls, cfg, class_stats: Optional[ClassStats] = None):
        stats = class_stats_for(cfg, "eql", class_stats)
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "image_frequency": stats.image_frequency,
            "threshold": cfg.MODEL.LT_LOSS.TAIL_THRESHOLD,
            "use_image_labels": cfg.MODEL.LT_LOSS.EQL.USE_IMAGE_LABELS,
            "exclude_background": cfg.MODEL.LT_LOSS.EQL.EXCLUDE_BACKGROUND,
            "activation": cfg.MODEL.LT_LOSS.ACTIVATION,
        }

    def unverified(self, proposals) -> Optional[torch.Tensor]:
        """(R, K) float 1 - V_ij with the image-label option, else None (every class unverified)."""
        if not self.use_image_labels:
            return None
        return 1.0 - verified_classes(proposals, self.num_classes).float()

    def excluded(self, gt_classes) -> torch.Tensor:
        """(R,) float E(r): 1 on foreground RoIs, 0 on background ones; all 1 without E(r)."""
        if not self.exclude_background:
            return torch.ones_like(gt_classes, dtype=torch.float)
        return (gt_classes < self.num_classes).float()

    def loss(self, logits, gt_classes, proposals=None, **extras):
        """(R, K) logits, (R,) labels [, proposals with ``gt_image_labels``] -> sum w BCE / R."""
        y = onehot_targets(gt_classes, self.num_classes)
        E = self.excluded(gt_classes)[:, None]
        T = self.tail[None, :]
        unverified = 1.0 if not self.use_image_labels else self.unverified(proposals)  # 1 - V
        w = 1 - E * T * unverified * (1 - y)
        return (w * binary_cross_entropy(logits, y, self.activation)).sum() / len(logits)

    def fused_loss(self, logits, gt_classes, proposals=None, **extras):
        return fused.weighted_binary_loss(
            logits, gt_classes, activation=self.activation, ignore_cols=self.tail,
            ignore_rows=self.excluded(gt_classes), ignore_full=self.unverified(proposals),
        )

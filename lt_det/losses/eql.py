"""Equalization Loss, EQL (Tan et al., "Equalization Loss for Long-Tailed Object Recognition",
CVPR 2020, eq. 7; released code: tztztztztz/eql.detectron2), with the sigmoid or GOL's Gumbel
activation.

Logits (R, K), no background logit; init N(0, 0.01), bias -6.9068 (pi = 0.001) for sigmoid.
``E_i = 1[gt_i != K]`` (the paper's E(r)), ``T_j = T(f_j)`` (the threshold function of image
frequency f) and

    w_ij = 1 - E_i T_j (1 - y_ij),    L = sum_ij w_ij BCE(z_ij, y_ij) / R

on foreground RoIs the negative terms of tail classes are removed; background RoIs keep every
term. lambda: 0.0011 on LVIS v1 (815 tail classes), 0.00177 on v0.5 (915 = rare + common).
Without the excluding function E(r) (the paper's Table 4 ablation, ``EXCLUDE_BACKGROUND False``),
E_i = 1 for every RoI: background RoIs lose their tail negatives too (the paper: 0.6 AP lower).

Threshold function T (the paper's §4.4 and Table 3; ``THRESHOLD_FUNCTION``):

    step          T(f) = 1[f < lambda]                      (the paper's and the released choice)
    exponential   T(f) = max(0, 1 - (a f)^n)                a = 400, n = 2
    gompertz      T(f) = 1 - a exp(-b exp(-c f))            a = 1, b = 80, c = 3000

with the paper's best hyper-parameters (LVIS v0.5, where lambda = 1.76e-3). The decays give tail
negatives a weight 1 - T between 0 and 1 and do not use lambda. The paper writes the exponential
decay as 1 - (a f)^n, which is negative for f > 1 / a (with a = 400, classes in more than 0.25% of
the images: about 142 on LVIS v0.5) and would weigh their negatives above 1, the opposite of a
decay; lt_det clips it at 0 (ours: the paper's text does not say). The step is the limit of both:
a = 1 / lambda, n -> inf, and a = 1, b = exp(c lambda), c -> inf.

Image-label option (the paper's LVIS rule, not in the released code): a class verified in the
RoI's image (LVIS ``pos_category_ids`` or ``neg_category_ids``) is never ignored:
``w_ij = 1 - E_i T_j (1 - V_ij) (1 - y_ij)``. V comes from the proposals' ``gt_image_labels``
field, (R, K) bool, which :class:`lt_det.data.image_labels.ImageLabelDatasetMapper` provides.
Test: sigma(z) (or the Gumbel CDF) and a zero background column.
"""
import logging
import math
from typing import List, Optional, Sequence

import numpy as np
import torch

from detectron2.config import CfgNode as CN
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.structures import Instances

from lt_det.data.class_stats import ClassStats
from lt_det.data.image_labels import IMAGE_LABELS_FIELD

from . import fused
from .base import BinaryLoss, class_stats_for, tail_classes, tail_frequency
from .functional import binary_cross_entropy, onehot_targets
from .registry import register_loss

logger = logging.getLogger(__name__)
THRESHOLD_FUNCTIONS = ("step", "exponential", "gompertz")


def tail_weights(
    image_frequency: Sequence[float],
    function: str = "step",
    threshold: float = 0.0011,
    exponential: Sequence[float] = (400.0, 2.0),
    gompertz: Sequence[float] = (1.0, 80.0, 3000.0),
) -> torch.Tensor:
    """(K,) float T(f_j) in [0, 1], one of the paper's three threshold functions (module docstring).

    Args:
        image_frequency: (K,) f_j, the share of training images that hold class j.
        function: "step", "exponential" or "gompertz".
        threshold: lambda of the step.
        exponential: (a, n) of max(0, 1 - (a f)^n), a > 0, n > 0.
        gompertz: (a, b, c) of 1 - a exp(-b exp(-c f)), 0 < a <= 1 (T stays in [0, 1]), b, c > 0.
    """
    if function == "step":
        return tail_classes(image_frequency, threshold, "EQL")
    f = np.asarray(image_frequency, dtype=np.float64)
    if function == "exponential":
        a, n = exponential
        if not (a > 0 and n > 0):
            raise ValueError(f"MODEL.LT_LOSS.EQL.EXPONENTIAL_DECAY (a, n) must be positive, got {tuple(exponential)}")
        T = np.clip(1.0 - (a * f) ** n, 0.0, None)
    elif function == "gompertz":
        a, b, c = gompertz
        if not (0 < a <= 1 and b > 0 and c > 0):
            raise ValueError(
                f"MODEL.LT_LOSS.EQL.GOMPERTZ_DECAY (a, b, c) needs 0 < a <= 1 and b, c > 0, got {tuple(gompertz)}")
        T = 1.0 - a * np.exp(-b * np.exp(-c * f))
    else:
        raise ValueError(
            f"MODEL.LT_LOSS.EQL.THRESHOLD_FUNCTION must be one of {list(THRESHOLD_FUNCTIONS)}, got {function!r}")
    ratio = float((T * f).sum() / f.sum()) if f.sum() > 0 else math.nan
    logger.info(f"EQL: {function} decay threshold function, T from {T.min():.3g} to {T.max():.3g}, "
                f"{int((T > 0.5).sum())} of {len(T)} classes above 1/2; weighted tail ratio sum T_j N_j / "
                f"sum N_j = {100.0 * ratio:.2f}%")
    return torch.as_tensor(T, dtype=torch.float32)


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
        threshold_function: str = "step",
        exponential_decay: Sequence[float] = (400.0, 2.0),
        gompertz_decay: Sequence[float] = (1.0, 80.0, 3000.0),
        activation: str = "sigmoid",
        prior_prob: float = 0.001,
    ):
        super().__init__(num_classes, activation, prior_prob, background_logit=False)
        self.use_image_labels = use_image_labels
        self.exclude_background = exclude_background
        tail = tail_weights(image_frequency, threshold_function, threshold, exponential_decay, gompertz_decay)
        self.register_buffer("tail", tail, persistent=False)  # (K,) float in [0, 1]: T_j

    @classmethod
    def add_config(cls, cfg):
        cfg.MODEL.LT_LOSS.EQL = CN()
        # The paper's LVIS rule (not in the released code): never ignore a class in the image's
        # pos_category_ids or neg_category_ids. Needs lt_det.data.image_labels.ImageLabelDatasetMapper.
        cfg.MODEL.LT_LOSS.EQL.USE_IMAGE_LABELS = False
        # E(r), the excluding function (paper eq. 7 and Table 4): True keeps every term of background
        # RoIs (the paper's and the released EQL); False applies the tail rule to background RoIs too.
        cfg.MODEL.LT_LOSS.EQL.EXCLUDE_BACKGROUND = True
        # T, the threshold function of eq. 7 (the paper's Table 3): "step" 1[f < lambda] (the paper's
        # and the released choice), "exponential" max(0, 1 - (a f)^n) or "gompertz"
        # 1 - a exp(-b exp(-c f)); the decays ignore TAIL_THRESHOLD.
        cfg.MODEL.LT_LOSS.EQL.THRESHOLD_FUNCTION = "step"
        # (a, n) of the exponential decay: the paper's best, a = 400, n = 2 (§4.4, LVIS v0.5).
        cfg.MODEL.LT_LOSS.EQL.EXPONENTIAL_DECAY = (400.0, 2.0)
        # (a, b, c) of the Gompertz decay: the paper's best, a = 1, b = 80, c = 3000 (§4.4, LVIS v0.5).
        cfg.MODEL.LT_LOSS.EQL.GOMPERTZ_DECAY = (1.0, 80.0, 3000.0)

    @classmethod
    def from_config(cls, cfg, class_stats: Optional[ClassStats] = None):
        stats = class_stats_for(cfg, "eql", class_stats)
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "image_frequency": tail_frequency(cfg, stats),
            "threshold": cfg.MODEL.LT_LOSS.TAIL_THRESHOLD,
            "use_image_labels": cfg.MODEL.LT_LOSS.EQL.USE_IMAGE_LABELS,
            "exclude_background": cfg.MODEL.LT_LOSS.EQL.EXCLUDE_BACKGROUND,
            "threshold_function": cfg.MODEL.LT_LOSS.EQL.THRESHOLD_FUNCTION,
            "exponential_decay": tuple(cfg.MODEL.LT_LOSS.EQL.EXPONENTIAL_DECAY),
            "gompertz_decay": tuple(cfg.MODEL.LT_LOSS.EQL.GOMPERTZ_DECAY),
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

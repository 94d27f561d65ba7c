"""Seesaw loss (Wang et al., "Seesaw Loss for Long-Tailed Instance Segmentation", CVPR 2021;
released code: open-mmlab/mmdetection, ``mmdet/models/losses/seesaw_loss.py``).

Logits (R, K + 2): K class logits, then 2 objectness logits [foreground, background].

* Class term, foreground RoIs only: for RoI i with label y and every class j != y,
  ``z_ij <- z_ij + log(M_yj C_ij)``, then softmax CE over the K class logits.
  Mitigation ``M_yj = (N_j / N_y)^p`` if N_j < N_y else 1, N = cumulative counts of the RoI labels
  seen so far (a buffer, updated each step before use, clamped to >= 1); p = 0.8.
  Compensation ``C_ij = (sigma_ij / sigma_iy)^q`` if sigma_ij > sigma_iy else 1, sigma the
  detached softmax over the K class logits, sigma_iy clamped to >= 1e-2; q = 2.0.
* Objectness term: 2-way softmax CE on every RoI (label 0 = foreground, 1 = background).

Both terms are sums divided by R. The counts are per process (no sync), as released.
Test: ``softmax(class logits) * p_obj_fg`` per class, background ``p_obj_bg``.
"""
import torch
from torch.nn import functional as F

from detectron2.config import CfgNode as CN
from detectron2.config import configurable

from . import fused
from .base import LTLoss
from .fused.seesaw import SEESAW_SELF_SCORE_MIN
from .registry import register_loss


def seesaw_class_ce(class_logits, labels, counts, p: float, q: float) -> torch.Tensor:
    """The reference class term, as mmdetection writes it: (F, K) logits of the foreground RoIs,
    (F,) labels, (K,) cumulative counts N -> sum_i CE(z_i + log(M_i C_i), y_i)."""
    onehot = F.one_hot(labels, class_logits.shape[1]).float()
    seesaw_weights = class_logits.new_ones(onehot.shape)
    if p > 0:  # mitigation
        n = counts.clamp(min=1.0)
        ratio = n[None, :] / n[:, None]  # (K, K): N_j / N_i
        mitigation = torch.where(ratio < 1.0, ratio.pow(p), torch.ones_like(ratio))
        seesaw_weights = seesaw_weights * mitigation[labels]
    if q > 0:  # compensation
        scores = F.softmax(class_logits.detach(), dim=1)
        self_scores = scores.gather(1, labels[:, None]).clamp(min=SEESAW_SELF_SCORE_MIN)
        score_ratio = scores / self_scores
        compensation = torch.where(score_ratio > 1.0, score_ratio.pow(q), torch.ones_like(score_ratio))
        seesaw_weights = seesaw_weights * compensation
    adjusted = class_logits + seesaw_weights.log() * (1 - onehot)
    return F.cross_entropy(adjusted, labels, reduction="sum")


@register_loss("seesaw")
class SeesawLoss(LTLoss):
    @configurable
    def __init__(self, *, num_classes: int, p: float = 0.8, q: float = 2.0):
        super().__init__(num_classes)
        self.p, self.q = p, q
        # N: cumulative count of each label, background included (K + 1,); saved in checkpoints.
        self.register_buffer("cum_samples", torch.zeros(num_classes + 1, dtype=torch.float))

    @classmethod
    def add_config(cls, cfg):
        cfg.MODEL.LT_LOSS.SEESAW = CN()
        cfg.MODEL.LT_LOSS.SEESAW.P = 0.8  # p, mitigation exponent (mmdetection / paper)
        cfg.MODEL.LT_LOSS.SEESAW.Q = 2.0  # q, compensation exponent (mmdetection / paper)

    @classmethod
    def from_config(cls, cfg):
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "p": cfg.MODEL.LT_LOSS.SEESAW.P,
            "q": cfg.MODEL.LT_LOSS.SEESAW.Q,
        }

    def num_logits(self, num_classes: int) -> int:
        return num_classes + 2

    def update_counts(self, gt_classes):
        """N += this step's label counts (before N is used, as released)."""
        self.cum_samples += torch.bincount(gt_classes, minlength=self.num_classes + 1).to(self.cum_samples)

    def objectness_loss(self, logits, gt_classes):
        """The 2-way objectness CE over every RoI, summed and divided by R."""
        is_bg = (gt_classes == self.num_classes).long()
        return F.cross_entropy(logits[:, self.num_classes :], is_bg, reduction="sum") / len(gt_classes)

    def loss(self, logits, gt_classes, **extras):
        """(R, K + 2) logits, (R,) labels -> class term + objectness term."""
        self.update_counts(gt_classes)
        loss_objectness = self.objectness_loss(logits, gt_classes)
        fg = (gt_classes < self.num_classes).nonzero().squeeze(1)
        counts = self.cum_samples[: self.num_classes]
        class_logits = logits[fg, : self.num_classes]
        return seesaw_class_ce(class_logits, gt_classes[fg], counts, self.p, self.q) / len(gt_classes) + loss_objectness

    def fused_loss(self, logits, gt_classes, **extras):
        self.update_counts(gt_classes)
        loss_objectness = self.objectness_loss(logits, gt_classes)
        fg = (gt_classes < self.num_classes).nonzero().squeeze(1)
        if len(fg) == 0:
            return loss_objectness
        weights = logits.new_full((len(fg),), 1.0 / len(gt_classes))
        counts = self.cum_samples[: self.num_classes]
        loss_classes = fused.seesaw_class_ce(logits[fg, : self.num_classes], gt_classes[fg], weights, counts,
                                             self.p, self.q)
        return loss_classes + loss_objectness

    def scores(self, logits):
        """(R, K + 2) -> (R, K + 1): softmax(classes) * p_obj_fg, background p_obj_bg."""
        probs = F.softmax(logits[:, : self.num_classes], dim=1)
        objectness = F.softmax(logits[:, self.num_classes :], dim=1)
        return torch.cat([probs * objectness[:, :1], objectness[:, 1:]], dim=1)

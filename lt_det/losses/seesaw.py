"""Seesaw loss (Wang et al., CVPR 2021; mmdetection's SeesawLoss; SPEC section 6b).

Logits (R, K + 2): K class logits, then 2 objectness logits [foreground, background].

* Class term, foreground RoIs only: for RoI i with label y and every class j != y,
  ``z_ij <- z_ij + log(M_yj * C_ij)``, then softmax CE over the K class logits.
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

from detectron2.config import configurable

from .base import LTLoss
from .functional import seesaw_class_ce
from .registry import register_loss

@register_loss("seesaw")
class SeesawLoss(LTLoss):
    @configurable
    def __init__(self, *, num_classes: int, p: float = 0.8, q: float = 2.0):
        super().__init__(num_classes)
        self.p, self.q = p, q
        # N: cumulative count of each label, background included (K + 1,); saved in checkpoints.
        self.register_buffer("cum_samples", torch.zeros(num_classes + 1, dtype=torch.float))

    @classmethod
    def from_config(cls, cfg):
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "p": cfg.MODEL.LT_LOSS.SEESAW.P,
            "q": cfg.MODEL.LT_LOSS.SEESAW.Q,
        }

    def num_logits(self, num_classes: int) -> int:
        return num_classes + 2

    def loss(self, logits, gt_classes, **extras):
        """(R, K + 2) logits, (R,) labels -> class term + objectness term."""
        num_rois = gt_classes.numel()
        self.cum_samples += torch.bincount(gt_classes, minlength=self.num_classes + 1).to(self.cum_samples)
        class_logits, objectness = logits[:, : self.num_classes], logits[:, self.num_classes :]
        is_bg = (gt_classes == self.num_classes).long()
        loss_objectness = F.cross_entropy(objectness, is_bg, reduction="sum") / num_rois

        fg = (is_bg == 0).nonzero().squeeze(1)
        if len(fg) == 0:
            return loss_objectness
        weights = logits.new_full((len(fg),), 1.0 / num_rois)
        counts = self.cum_samples[: self.num_classes]
        loss_classes = seesaw_class_ce(class_logits[fg], gt_classes[fg], weights, counts, self.p, self.q)
        return loss_classes + loss_objectness

    def scores(self, logits):
        """(R, K + 2) -> (R, K + 1): softmax(classes) * p_obj_fg, background p_obj_bg."""
        probs = F.softmax(logits[:, : self.num_classes], dim=1)
        objectness = F.softmax(logits[:, self.num_classes :], dim=1)
        return torch.cat([probs * objectness[:, :1], objectness[:, 1:]], dim=1)

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
from .registry import register_loss

SELF_SCORE_MIN = 1e-2  # mmdetection's eps on sigma_iy


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
        z, labels = class_logits[fg], gt_classes[fg]
        log_weights = z.new_zeros(z.shape)
        if self.p > 0:
            counts = self.cum_samples[: self.num_classes].clamp(min=1.0)
            ratio = counts[None, :] / counts[labels][:, None]  # N_j / N_y
            log_weights += ratio.log_().clamp_(max=0.0).mul_(self.p)  # log M: p log(N_j / N_y) where < 0
        if self.q > 0:
            sigma = F.softmax(z.detach(), dim=1)
            self_score = sigma.gather(1, labels[:, None]).clamp(min=SELF_SCORE_MIN)
            ratio = sigma / self_score
            log_weights += ratio.log_().clamp_(min=0.0).mul_(self.q)  # log C: q log(ratio) where > 0
        log_weights.scatter_(1, labels[:, None], 0.0)
        loss_classes = F.cross_entropy(z + log_weights, labels, reduction="sum") / num_rois
        return loss_classes + loss_objectness

    def scores(self, logits):
        """(R, K + 2) -> (R, K + 1): softmax(classes) * p_obj_fg, background p_obj_bg."""
        probs = F.softmax(logits[:, : self.num_classes], dim=1)
        objectness = F.softmax(logits[:, self.num_classes :], dim=1)
        return torch.cat([probs * objectness[:, :1], objectness[:, 1:]], dim=1)

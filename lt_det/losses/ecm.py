"""Effective Class-Margin loss, ECM (Jang Hyun Cho and Philipp Krähenbühl, "Long-tail Detection with
Effective Class-Margins", ECCV 2022; released code: janghyuncho/ECM-Loss,
``mmdet/models/losses/effective_class_margin_loss.py`` and ``mmdet/models/losses/ecm_utils.py``,
LVIS v1 recipes ``configs/effective_class_margin_loss/r50_ecm_{1x,2x}.py``).

Logits (R, K + 1): K class logits and, last, a background ("objectness") logit; all K + 1 columns
are independent binary classifiers trained with margins. Init: detectron2's N(0, 0.01), bias 0
(mmdetection's ``fc_cls`` Normal(std=0.01) init, also used by its ``NormedLinear``); the released
recipes use the cosine classifier, ``MODEL.LT_LOSS.COSINE_TEMPERATURE: 20``.

Counts, one per column c (K + 1): ``n_c`` = training *instance* count of class c (the released
``lvis_v1_image_count.pkl`` holds LVIS v1 train's per-class ``instance_count`` despite its name:
class 1 has 109, the json's instance_count, not its image_count 64; they sum to 1,270,141, LVIS v1
train's number of annotations), and for the background ``n_K = rho * sum_{j<K} n_j``. With
``N = sum_c n_c`` (background included): ``n+_c = n_c`` positives, ``n-_c = N - n_c`` negatives.

The paper's closed forms (the released ecm_utils.py names the weight "Theorem 2"):

    a_c     = n-_c / n+_c                                    negative-to-positive ratio
    w_c     = a_c log(1 + 1 / a_c)                           class weight
    gamma+_c = n-_c^(1/4) / (n+_c^(1/4) + n-_c^(1/4))        optimal margins
    gamma-_c = n+_c^(1/4) / (n+_c^(1/4) + n-_c^(1/4))
    p_ic    = (e^{z_ic} / gamma+_c) / (e^{z_ic} / gamma+_c + e^{-z_ic} / gamma-_c)
    L       = -(1 / R) sum_i sum_{c <= K} w_c [t_ic log p_ic + (1 - t_ic) log(1 - p_ic)]

with ``t = onehot(gt, K + 1)`` (a background RoI is the positive of column K). In logit form, with
the margins ``m+_c = -log gamma+_c`` and ``m-_c = -log gamma-_c``:
``p_ic = sigma((z_ic + m+_c) - (-z_ic + m-_c)) = sigma(2 z_ic + (1/4) log(n+_c / n-_c))``, so each
term is ``w_c BCE(2 z_ic + m+_c - m-_c, t_ic)``, computed here in that stable form.
Reduction: sum over RoIs and all K + 1 columns, divided by R (released: ``.sum() / B``; mmdetection's
``label_weights``, ``avg_factor`` and ``reduction`` arguments are ignored there).

Test scores (released ``get_activation``; no margins, and sigma of z, not of 2z):
``p_j = sigma(z_j) (1 - sigma(z_K))`` for j < K, background column ``sigma(z_K)``.

Hard-coded constants of the released code:

* ``fg_bg_ratio = 6.3313`` (rho, "empirical fg-bg ratio from Mask-RCNN"): the number of background
  RoIs per foreground RoI that the LVIS v1 Mask R-CNN RoI sampler draws (512 RoIs per image,
  positive fraction 0.25). ``MODEL.LT_LOSS.ECM.FG_BG_RATIO``; default the released 6.3313. For
  another dataset or sampler it is measured: read detectron2's ``roi_head/num_bg_samples`` /
  ``roi_head/num_fg_samples`` from a baseline run, or set 0 (ours) to measure it during this
  training: rho = (background RoIs seen) / (foreground RoIs seen), cumulative counts in buffers
  (saved in checkpoints, per process, updated with each step's labels before use).
* The exponent 1/4 of the margins (from the paper's margin bound) and ``loss_weight
  = 1``: fixed here.
* The class counts are a fixed file per dataset (``lvis_v1_image_count.pkl``); here they come from
  the training set's statistics (``instance_count``), so any registered dataset works. A zero count
  is counted as 1 (lt_det's convention; LVIS v1 has none).

Differences from the paper / notes: the released test score drops the margins and uses sigma(z)
although training models sigma(2z + m+ - m-) (monotone in z per class, but it changes how the class
score and the objectness are combined). The fused path (``fused_loss``) is the same BCE on the
doubled logits with the shift m+ - m- and the weights w. The Gumbel activation is not offered:
the margins enter as the log-weights 1 / gamma of a two-logit softmax (logistic) score,
and the Gumbel CDF has no such form, so "ECM with Gumbel" would be a new method.
"""
from typing import Optional, Sequence, Tuple

import torch
from torch.nn import functional as F

from detectron2.config import CfgNode as CN
from detectron2.config import configurable

from lt_det.data.class_stats import ClassStats

from . import fused
from .base import LTLoss, class_stats_for, positive_counts
from .registry import register_loss

RELEASED_FG_BG_RATIO = 6.3313  # the released LVIS v1 value of rho (background RoIs per foreground RoI)


def with_background(n: torch.Tensor, fg_bg_ratio) -> torch.Tensor:
    """(K,) float64 foreground counts -> (K + 1,) n with n_K = rho sum_j n_j (rho a float or a
    0-dim tensor on n's device)."""
    return torch.cat([n, (n.sum() * fg_bg_ratio).reshape(1)])


def ecm_counts(instance_count, fg_bg_ratio: float) -> torch.Tensor:
    """(K + 1,) float64 n: the K instance counts (zeros counted as 1), then n_K = rho sum_j n_j."""
    return with_background(positive_counts(instance_count), fg_bg_ratio)


def ecm_margins(counts: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(K + 1,) counts n -> margins m+ = -log gamma+, m- = -log gamma-, weights w (float64).

    n+ = n, n- = sum(n) - n, gamma+ = n-^(1/4) / (n+^(1/4) + n-^(1/4)), gamma- = n+^(1/4) / (...),
    w = a log(1 + 1 / a) with a = n- / n+.
    """
    n_pos = counts.double()
    n_neg = n_pos.sum() - n_pos
    root_pos, root_neg = n_pos.pow(0.25), n_neg.pow(0.25)
    gamma_pos = root_neg / (root_pos + root_neg)
    gamma_neg = root_pos / (root_pos + root_neg)
    a = n_neg / n_pos
    weight = a * torch.log1p(1.0 / a)
    return -gamma_pos.log(), -gamma_neg.log(), weight


@register_loss("ecm")
class EffectiveClassMarginLoss(LTLoss):
    score_activation = "sigmoid"  # sigma(z_j) (1 - sigma(z_K)): independent class scores

    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        instance_count: Sequence[int],
        fg_bg_ratio: float = RELEASED_FG_BG_RATIO,
    ):
        super().__init__(num_classes)
        if len(instance_count) != num_classes:
            raise ValueError(
                f"Loss 'ecm' (MODEL.LT_LOSS.NAME): 'instance_count' has {len(instance_count)} entries but "
                f"num_classes (MODEL.ROI_HEADS.NUM_CLASSES) is {num_classes}; it must list the instance count of "
                "every class (built from a config: the class statistics of the DATASETS.TRAIN datasets)."
            )
        if fg_bg_ratio < 0:
            raise ValueError(f"MODEL.LT_LOSS.ECM.FG_BG_RATIO is {fg_bg_ratio}; expected > 0, or 0 to measure it")
        self.fg_bg_ratio = float(fg_bg_ratio)
        self.register_buffer("instance_count", positive_counts(instance_count), persistent=False)  # (K,) n_j
        # Cumulative [foreground, background] RoI counts of this training (used when rho is measured).
        self.register_buffer("roi_counts", torch.zeros(2, dtype=torch.float64))
        # With rho measured, these start at rho = 1 and are recomputed from the first step on.
        m_pos, m_neg, weight = ecm_margins(with_background(self.instance_count, self.current_ratio()))
        self.register_buffer("margin_pos", m_pos.float(), persistent=False)  # (K + 1,) m+_c
        self.register_buffer("margin_neg", m_neg.float(), persistent=False)  # (K + 1,) m-_c
        self.register_buffer("class_weight", weight.float(), persistent=False)  # (K + 1,) w_c

    @classmethod
    def add_config(cls, cfg):
        cfg.MODEL.LT_LOSS.ECM = CN()
        # rho: background RoIs per foreground RoI, n_bg = rho * sum_j instance_count_j. 6.3313 is the
        # released value ("empirical fg-bg ratio from Mask-RCNN", LVIS v1, 512 RoIs / image, positive
        # fraction 0.25); 0 (ours) measures it during training (cumulative RoI labels, per process).
        cfg.MODEL.LT_LOSS.ECM.FG_BG_RATIO = RELEASED_FG_BG_RATIO

    @classmethod
    def from_config(cls, cfg, class_stats: Optional[ClassStats] = None):
        stats = class_stats_for(cfg, "ecm", class_stats)
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "instance_count": stats.instance_count,
            "fg_bg_ratio": cfg.MODEL.LT_LOSS.ECM.FG_BG_RATIO,
        }

    @property
    def measures_ratio(self) -> bool:
        return self.fg_bg_ratio == 0.0

    def measured_ratio(self) -> torch.Tensor:
        """0-dim float64 tensor: background / foreground RoIs seen so far (each counted >= 1)."""
        fg, bg = self.roi_counts.clamp(min=1.0).unbind()
        return bg / fg

    def current_ratio(self) -> float:
        """rho in use: the configured one, or the measured one."""
        return self.measured_ratio().item() if self.measures_ratio else self.fg_bg_ratio

    def update_margins(self, gt_classes: torch.Tensor) -> None:
        """With rho measured: add the step's RoI labels to the counts, then recompute m+, m-, w."""
        if not self.measures_ratio:
            return
        num_bg = (gt_classes == self.num_classes).sum().to(self.roi_counts)
        self.roi_counts += torch.stack([len(gt_classes) - num_bg, num_bg])
        m_pos, m_neg, weight = ecm_margins(with_background(self.instance_count, self.measured_ratio()))
        self.margin_pos.copy_(m_pos)
        self.margin_neg.copy_(m_neg)
        self.class_weight.copy_(weight)

    def loss(self, logits, gt_classes, **extras):
        """(R, K + 1) logits, (R,) labels -> sum_ic w_c BCE((z + m+) - (-z + m-), t) / R."""
        self.update_margins(gt_classes)
        t = F.one_hot(gt_classes, self.num_classes + 1).float()
        x = (logits + self.margin_pos) - (-logits + self.margin_neg)
        bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
        return (bce * self.class_weight).sum() / len(logits)

    def fused_loss(self, logits, gt_classes, **extras):
        self.update_margins(gt_classes)
        # BCE(2 z + (m+ - m-), t): the kernel's logit shift s_j = m+_j - m-_j on the doubled logits
        # (autograd carries the factor 2 back), column weight w_c on positives and negatives alike.
        return fused.weighted_binary_loss(2.0 * logits, gt_classes, num_columns=self.num_classes + 1,
                                          logit_shift=self.margin_pos - self.margin_neg,
                                          pos_weight=self.class_weight, neg_weight=self.class_weight)

    def scores(self, logits):
        """(R, K + 1) -> (R, K + 1): sigma(z_j) (1 - sigma(z_K)) per class, background sigma(z_K)."""
        probs = torch.sigmoid(logits)
        background = probs[:, self.num_classes :]
        return torch.cat([probs[:, : self.num_classes] * (1.0 - background), background], dim=1)

"""Adaptive Class Suppression Loss, ACSL (Wang, Zhu, Zhao, Zeng, Wang, Tang, "Adaptive Class
Suppression Loss for Long-Tail Object Detection", CVPR 2021; released code: CASIA-IVA-Lab/ACSL,
``mmdet/models/losses/acsl.py``, mmdetection v1.0rc0), with the sigmoid or GOL's Gumbel activation
(the Gumbel variant as in GOL's Table 6, released in kostas1515/LongTailActivations
``mmdet/models/losses/acsl.py``, ``variant='gumbel'``).

Paper: one binary classifier per category; a proposal with label k gets
``L = -sum_j w_j log p^_j`` with ``p^_j = p_j`` for j = k and ``1 - p_j`` otherwise, and
``w_j = 1`` if j = k, ``1`` if j != k and ``p_j >= xi``, ``0`` if j != k and ``p_j < xi``: a
negative class is suppressed (gets a negative gradient) only where the classifier already confuses
it, whatever the class frequency. xi = 0.7.

Logits (R, K + 1): K class logits and a background logit (last here; column 0 in the released
mmdetection v1 layout), all trained. ``y = onehot(gt, K + 1)`` (the background column has target 1
on background RoIs), ``p = activation(z)`` detached (sigmoid, or the Gumbel CDF of the clamped
logit, eta(clamp(z, -4, 10))), ``G_j`` in {r, c, f} = LVIS frequency group of class j. As released:

* foreground RoI i:  ``w_ij = max(y_ij, 1[p_ij >= xi])`` over all K + 1 columns (the background
  column is a negative kept only when its score reaches xi);
* background RoI i:  the score rule is NOT applied. ``w_iK = 1`` (the background positive);
  ``w_ij = 1`` for every frequent class; for the common classes on a random
  ``floor(0.1 n_bg)`` of the step's n_bg background RoIs, for the rare classes on a random
  ``floor(0.01 n_bg)`` of them (two independent draws without replacement); 0 elsewhere;
* ``L = sum_ij w_ij l(z_ij, y_ij) / R``, l = BCE or the Gumbel BCE (sum over (RoI, column), divided
  by the number of RoIs; label weights and avg_factor are ignored, as released).

The weights are built from detached scores and random draws: no gradient flows through them.
Shapes: logits (R, K + 1), gt_classes (R,) in [0, K], y / w (R, K + 1).

Released code vs paper and lt_det:

* Background RoIs: the released code first sets their high-score mask to 0, then keeps the
  frequency groups with the hard-coded fractions 1.0 / 0.1 / 0.01 of background RoIs (its comments
  say "1/3" and "2/3", and "set the weight of all classes to 1"; the code does neither). lt_det
  keeps the code's rule; ``background_keep`` (rare, common, frequent) exposes the three fractions.
  (1, 1, 1) keeps every background-RoI term (plain BCE on background RoIs).
* Released code asserts 0 < xi < 1. lt_det accepts any xi: xi <= 0 keeps every negative of a
  foreground RoI, xi > 1 none.
* Classifier init: the released bbox head sets weight N(0, 0.01), bias -log(0.99 / 0.01) = -4.595
  (prior 0.01) for ACSL (``bbox_head.py`` init_weights), but its recipe then loads the whole
  softmax-CE baseline (classifier included) and trains only the classifier: a decoupled stage 2.
* Random draws: the released code uses ``np.random.choice``; the reference here ``torch.randperm``
  (torch's global generator), per process, once per step.
* Gumbel: BCE of eta(clamp(z, -4, 10)) with lt_det's exact derivative
  (:func:`lt_det.losses.functional.gumbel_cross_entropy`; the port takes ``F.binary_cross_entropy``
  of the clamped CDF), threshold on the same clamped CDF, init weights 0.001 and bias -2.

Test: the activation over the K + 1 logits (sigma, or the unclamped Gumbel CDF); detectron2 drops
the background column (mmdetection v1's multiclass_nms skips it). The background column is a
trained classifier, so training statistics take the argmax over all K + 1 scores.
"""
from typing import Sequence

import torch
from torch.nn import functional as F

from detectron2.config import CfgNode as CN
from detectron2.config import configurable

from . import fused
from .base import BinaryLoss, LTLoss, class_stats_for
from .functional import GUMBEL_TRAIN_CLAMP, binary_cross_entropy
from .registry import register_loss

FREQUENCY_GROUPS = ("r", "c", "f")  # the order of ``background_keep``
RELEASED_BACKGROUND_KEEP = (0.01, 0.1, 1.0)  # rare, common, frequent: hard-coded in the released code
RELEASED_PRIOR_PROB = 0.01  # released bbox_head.py: bias -log((1 - 0.01) / 0.01) for ACSL


def threshold_probs(logits: torch.Tensor, activation: str) -> torch.Tensor:
    """Detached scores the threshold is compared with: sigma(z), or eta(clamp(z, -4, 10))."""
    z = logits.detach()
    if activation == "gumbel":
        return torch.exp(-torch.exp(-z.clamp(*GUMBEL_TRAIN_CLAMP)))
    return torch.sigmoid(z)


@register_loss("acsl")
class AdaptiveClassSuppressionLoss(BinaryLoss):
    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        frequency: Sequence[str],
        score_threshold: float = 0.7,
        background_keep: Sequence[float] = RELEASED_BACKGROUND_KEEP,
        activation: str = "sigmoid",
        prior_prob: float = RELEASED_PRIOR_PROB,
    ):
        """
        Args:
            frequency: (K,) LVIS frequency group "r" / "c" / "f" of each class (class statistics).
            score_threshold: xi.
            background_keep: (rare, common, frequent) fraction of a step's background RoIs on which
                that group's negatives are kept.
        """
        super().__init__(num_classes, activation, prior_prob, background_logit=True)
        frequency = [str(g) for g in frequency]
        if len(frequency) != num_classes:
            raise ValueError(
                f"Loss 'acsl' (MODEL.LT_LOSS.NAME): 'frequency' has {len(frequency)} entries but num_classes "
                f"(MODEL.ROI_HEADS.NUM_CLASSES) is {num_classes}; it must list the frequency group of every "
                "class (built from a config: the class statistics of the DATASETS.TRAIN datasets)."
            )
        unknown = sorted(set(frequency) - set(FREQUENCY_GROUPS))
        if unknown:
            raise ValueError(f"ACSL: unknown frequency groups {unknown} in 'frequency'; expected {FREQUENCY_GROUPS}")
        background_keep = tuple(float(r) for r in background_keep)
        if len(background_keep) != 3 or not all(0.0 <= r <= 1.0 for r in background_keep):
            raise ValueError(
                f"ACSL: background_keep (MODEL.LT_LOSS.ACSL.BACKGROUND_KEEP) must be 3 fractions in [0, 1] "
                f"(rare, common, frequent), got {background_keep}"
            )
        self.score_threshold = float(score_threshold)
        self.background_keep = background_keep
        group = torch.tensor([FREQUENCY_GROUPS.index(g) for g in frequency], dtype=torch.long)
        self.register_buffer("group", group, persistent=False)  # (K,) 0 / 1 / 2 = r / c / f

    @classmethod
    def add_config(cls, cfg):
        cfg.MODEL.LT_LOSS.ACSL = CN()
        # xi: a negative class of a foreground RoI is kept (suppressed) only where its detached
        # score (sigma, or the clamped Gumbel CDF with MODEL.LT_LOSS.ACTIVATION "gumbel") is >= xi.
        # 0.7: the paper's choice and every released config (LVIS v0.5; also the LVIS v1 / v0.5
        # configs of GOL's port, kostas1515/LongTailActivations configs/decoupled/acsl_*.py).
        cfg.MODEL.LT_LOSS.ACSL.SCORE_THRESHOLD = 0.7
        # Background RoIs (no xi rule there, as released): the fraction of a step's background
        # RoIs, drawn at random, on which the negatives of the (rare, common, frequent) classes are
        # kept. (0.01, 0.1, 1.0) is hard-coded in the released acsl.py; (1, 1, 1) keeps them all.
        cfg.MODEL.LT_LOSS.ACSL.BACKGROUND_KEEP = [0.01, 0.1, 1.0]
        # pi: sigmoid classifier bias init -log((1 - pi) / pi); 0.01 (-4.595) in the released
        # bbox head for ACSL. A stage-2 run from a softmax model keeps that model's classifier
        # (DECOUPLED.CLASSIFIER_INIT "keep" / "auto"), as the released recipe does.
        cfg.MODEL.LT_LOSS.ACSL.PRIOR_PROB = 0.01

    @classmethod
    def from_config(cls, cfg, class_stats=None):
        stats = class_stats_for(cfg, "acsl", class_stats)
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "frequency": list(stats.frequency),
            "score_threshold": cfg.MODEL.LT_LOSS.ACSL.SCORE_THRESHOLD,
            "background_keep": tuple(cfg.MODEL.LT_LOSS.ACSL.BACKGROUND_KEEP),
            "activation": cfg.MODEL.LT_LOSS.ACTIVATION,
            "prior_prob": cfg.MODEL.LT_LOSS.ACSL.PRIOR_PROB,
        }

    def background_rows(self, num_background: int, device) -> torch.Tensor:
        """(3, n_bg) bool: for each group (r, c, f), which of the step's background RoIs keep that
        group's negatives: ``floor(ratio * n_bg)`` of them, drawn without replacement, one
        independent draw per group (ratio 1: all of them, ratio 0: none)."""
        chosen = torch.zeros(3, num_background, dtype=torch.bool, device=device)
        for g, ratio in enumerate(self.background_keep):
            count = int(num_background * ratio)  # the released int(len(cls_inds) * ratio)
            if count >= num_background:
                chosen[g] = True
            elif count > 0:
                chosen[g, torch.randperm(num_background, device=device)[:count]] = True
        return chosen

    @torch.no_grad()
    def weights(self, logits: torch.Tensor, gt_classes: torch.Tensor) -> torch.Tensor:
        """(R, K + 1) float 0 / 1 weights w (no gradient): the score rule on foreground RoIs, the
        background column plus the drawn frequency groups on background RoIs."""
        K = self.num_classes
        y = F.one_hot(gt_classes, K + 1).to(logits.dtype)
        high = (threshold_probs(logits, self.activation) >= self.score_threshold).to(logits.dtype)
        w = torch.maximum(y, high)  # foreground rows: positive + confusing negatives
        bg = (gt_classes == K).nonzero().squeeze(1)
        if len(bg):
            chosen = self.background_rows(len(bg), logits.device)  # (3, n_bg)
            groups = torch.arange(3, device=logits.device)[:, None, None]
            keep = chosen[:, :, None] & (self.group[None, None, :] == groups)  # (3, n_bg, K)
            w_bg = keep.any(dim=0).to(logits.dtype)  # (n_bg, K)
            w_bg = torch.cat([w_bg, w_bg.new_ones(len(bg), 1)], dim=1)  # the background positive
            w[bg] = w_bg
        return w

    def loss(self, logits, gt_classes, **extras):
        """(R, K + 1) logits, (R,) labels -> sum_ij w_ij l(z_ij, y_ij) / R."""
        y = F.one_hot(gt_classes, self.num_classes + 1).float()
        w = self.weights(logits, gt_classes)
        return (w * binary_cross_entropy(logits, y, self.activation)).sum() / len(logits)

    def fused_loss(self, logits, gt_classes, **extras):
        # The same weights, built inside the kernel: the score rule on foreground rows, and on
        # background rows each column's group looked up in the (R, 3) draws (the same draws, in the
        # same order, as weights()). Positives are never ignored.
        K = self.num_classes
        foreground = gt_classes < K
        group_keep = logits.new_zeros(len(gt_classes), 3)
        bg = (~foreground).nonzero().squeeze(1)
        if len(bg):
            group_keep[bg] = self.background_rows(len(bg), logits.device).t().to(logits.dtype)
        rule = fused.ScoreThreshold(threshold=logits.new_tensor(self.score_threshold), rows=foreground.float(),
                                    group_keep=group_keep, group_cols=self.column_groups)
        return fused.weighted_binary_loss(logits, gt_classes, activation=self.activation, num_columns=K + 1,
                                          ignore_cols=logits.new_ones(K + 1), score_threshold=rule)

    @property
    def column_groups(self) -> torch.Tensor:
        """(K + 1,) int64: each column's frequency group, the background column's set to 0 (it is
        a positive on background rows, never ignored there)."""
        return torch.cat([self.group, self.group.new_zeros(1)])

    # The background column is a trained classifier here: plain argmax over K + 1 scores.
    predict_classes = LTLoss.predict_classes

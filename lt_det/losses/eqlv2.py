"""Equalization Loss v2, EQLv2 (Tan, Lu, Zhang, Yin, Li, "Equalization Loss v2: A New Gradient
Balance Approach for Long-tailed Object Detection", CVPR 2021; released code: tztztztztz/eqlv2,
``mmdet/models/losses/eqlv2.py`` at commit 907fad9 "EQLv2 support resuming", with the classifier
init of ``mmdet/models/roi_heads/bbox_heads/convfc_bbox_head.py``).

Paper (gradient-guided re-weighting, §3): every class j is an independent binary task; at
iteration t its positive and negative gradients are re-weighted by

    q_j^t = 1 + alpha (1 - f(g_j^t)),   r_j^t = f(g_j^t),   f(x) = 1 / (1 + exp(-gamma (x - mu)))

where g_j^t is the ratio of the accumulated (re-weighted) positive to negative gradient magnitudes
of task j over iterations 0 .. t - 1; gamma = 12, mu = 0.8, alpha = 4. An extra category-agnostic
task (the "objectness" branch) reduces false positives.

Logits (R, K + 1): K class logits, then the objectness column, which the released code trains as a
*background* classifier: its target is ``1[gt_i = K]``. With ``y`` the one-hot of gt over all
K + 1 columns (``y_iK = 1`` for a background RoI) and ``l`` the elementwise binary loss (BCE, or
GOL's Gumbel loss with ``activation="gumbel"``):

    w_ij = q_j y_ij + r_j (1 - y_ij)   (q_K = r_K = 1: the objectness column is never re-weighted)
    L    = sum_ij w_ij l(z_ij, y_ij) / R

Statistics (buffers, saved in checkpoints): ``pos_grad`` / ``neg_grad`` (K,) accumulate
``sum_i w_ij |d l(z_ij, y_ij) / d z_ij|`` over the positives / negatives of class j (the gradient
magnitude of the elementwise weighted loss, i.e. ``R |dL / dz_ij|``: the released code has no 1 / R
there), and ``pos_neg = pos_grad / (neg_grad + 1e-10)`` is g. They are updated *after* the loss is
computed, so step t's weights use steps 0 .. t - 1 only; ``pos_neg`` starts at 100, where f(100) is
1 to float precision: the first step is plain binary CE over the K + 1 columns. The objectness
column collects nothing. With ``sync_stats`` the step's sums are all-reduced (summed) over the
processes before they are added, as released (``torch.distributed.all_reduce``), when
torch.distributed is initialised with more than one process; otherwise each process keeps its own.

Released code vs paper: the objectness task is a background classifier (target 1 for background
RoIs, test scores multiplied by 1 - sigma(z_K)); the collected gradient is the re-weighted one
(w |p - y|), summed over the RoIs without 1 / R; the first version of the code started with no
statistics (weights 1), the resumable one with ``pos_neg = 100`` (the same weights).

Init: weights N(0, 0.01), bias -log((1 - 0.001) / 0.001) = -6.9068 on all K + 1 rows, objectness
included (released ``normal_init(fc_cls, std=0.01, bias=bias_init_with_prob(0.001))``); Gumbel:
GOL's constants (see :class:`BinaryLoss`).
Test (``test_with_obj``, released default True): ``[sigma(z_j) (1 - sigma(z_K))]_j<K`` and
``sigma(z_K)`` as the background column (or the Gumbel CDF instead of sigma); without it sigma(z).

The Gumbel activation is lt_det's option (GOL's released code has no EQLv2 loss): the statistics
are then the magnitudes of the Gumbel loss's own derivative (zero where GOL's [-4, 10] training
clamp is active).
"""
import torch
import torch.distributed as dist

from detectron2.config import CfgNode as CN
from detectron2.config import configurable
from detectron2.utils import comm

from . import fused
from .base import BinaryLoss
from .functional import binary_cross_entropy, binary_probs, onehot_targets
from .registry import register_loss
from .running_stats import RunningClassStatistics

INITIAL_POS_NEG = 100.0  # released initial g: f(100) = 1 in float32, so the first step's weights are 1
POS_NEG_EPS = 1e-10  # released: g = pos_grad / (neg_grad + 1e-10)
STAT_BUFFERS = ("pos_grad", "neg_grad", "pos_neg")


def stats_are_synced(sync_stats: bool) -> bool:
    """Whether this step's sums are all-reduced: asked for, and more than one process running."""
    return sync_stats and comm.get_world_size() > 1


@register_loss("eqlv2")
class EQLv2(RunningClassStatistics, BinaryLoss):
    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        gamma: float = 12.0,
        mu: float = 0.8,
        alpha: float = 4.0,
        sync_stats: bool = True,
        test_with_obj: bool = True,
        activation: str = "sigmoid",
        prior_prob: float = 0.001,
    ):
        super().__init__(num_classes, activation, prior_prob, background_logit=True)
        self.gamma, self.mu, self.alpha = gamma, mu, alpha
        self.sync_stats = sync_stats
        self.test_with_obj = test_with_obj
        # Accumulated |gradient| of the positives / negatives of each class, and their ratio g.
        self.register_buffer("pos_grad", torch.zeros(num_classes))
        self.register_buffer("neg_grad", torch.zeros(num_classes))
        self.register_buffer("pos_neg", torch.full((num_classes,), INITIAL_POS_NEG))
        # Adds the scalar buffer stats_num_classes = K: a checkpoint of another K is refused on load.
        self.track_statistics("eqlv2", STAT_BUFFERS)

    @classmethod
    def add_config(cls, cfg):
        _C = cfg.MODEL.LT_LOSS.EQLV2 = CN()
        # gamma of the mapping f(x) = 1 / (1 + exp(-gamma (x - mu))) (paper; released eqlv2.py: 12).
        _C.GAMMA = 12.0
        # mu, the ratio g at which f = 0.5 (paper; released eqlv2.py: 0.8).
        _C.MU = 0.8
        # alpha, positive weight q = 1 + alpha (1 - f(g)) (paper; released eqlv2.py: 4.0).
        _C.ALPHA = 4.0
        # All-reduce (sum) each step's gradient sums over the processes before accumulating them,
        # when torch.distributed runs more than one process. Default True, as the authors' released
        # eqlv2.py (unconditional dist.all_reduce) and the paper's statistic of the whole batch;
        # mmdetection 3's port (mmdet/models/losses/eqlv2_loss.py, use_distributed) defaults to
        # per-process only because it cannot assume distributed training. False: per-process.
        _C.SYNC_STATS = True
        # Test scores sigma(z_j) (1 - sigma(z_K)) with the objectness (background) column; False:
        # sigma(z_j) alone (released test_with_obj, default True).
        _C.TEST_WITH_OBJ = True

    @classmethod
    def from_config(cls, cfg):
        c = cfg.MODEL.LT_LOSS.EQLV2
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "gamma": c.GAMMA,
            "mu": c.MU,
            "alpha": c.ALPHA,
            "sync_stats": c.SYNC_STATS,
            "test_with_obj": c.TEST_WITH_OBJ,
            "activation": cfg.MODEL.LT_LOSS.ACTIVATION,
        }

    def column_weights(self):
        """(K + 1,) positive weights q and negative weights r of the current statistics; the
        objectness column's are 1."""
        r = torch.sigmoid(self.gamma * (self.pos_neg - self.mu))  # f(g) = 1 / (1 + exp(-gamma (g - mu)))
        r = torch.cat([r, r.new_ones(1)])
        q = 1.0 + self.alpha * (1.0 - r)
        return q, r

    def check_width(self, logits):
        if logits.shape[1] != self.num_classes + 1:
            raise ValueError(f"EQLv2 takes K + 1 = {self.num_classes + 1} logits per RoI (K class logits, then "
                             f"objectness); got {logits.shape[1]}")

    def loss(self, logits, gt_classes, **extras):
        """(R, K + 1) logits, (R,) labels -> sum_ij w_ij l(z_ij, y_ij) / R; then the statistics."""
        self.check_width(logits)
        y = onehot_targets(gt_classes, self.num_classes + 1)  # background RoIs: y_iK = 1
        q, r = self.column_weights()
        w = q * y + r * (1.0 - y)
        loss = (w * binary_cross_entropy(logits, y, self.activation)).sum() / len(logits)
        self.collect(logits.detach(), y, w)
        return loss

    def elementwise_grad(self, logits, y):
        """(R, K + 1) d l(z_ij, y_ij) / d z_ij of the activation's binary loss (autograd)."""
        with torch.enable_grad():
            z = logits.detach().requires_grad_()
            (grad,) = torch.autograd.grad(binary_cross_entropy(z, y, self.activation).sum(), z)
        return grad

    def collect(self, logits, y, w):
        """Add this step's sum_i w_ij |dl_ij / dz_ij| over positives / negatives (classes only)."""
        g = self.elementwise_grad(logits, y).abs() * w
        self.add_step_sums((g * y).sum(dim=0), (g * (1.0 - y)).sum(dim=0))

    def fused_loss(self, logits, gt_classes, **extras):
        # The kernel returns the loss and the same per-column sums of w |dl / dz| (no 1 / R).
        self.check_width(logits)
        q, r = self.column_weights()
        loss, pos, neg = fused.weighted_binary_loss(logits, gt_classes, activation=self.activation,
                                                    num_columns=self.num_classes + 1, pos_weight=q,
                                                    neg_weight=r, grad_sums=True)
        self.add_step_sums(pos, neg)
        return loss

    def add_step_sums(self, pos, neg):
        """(K + 1,) this step's positive / negative sums -> all-reduced (when synced) over the
        processes and added to the statistics; the objectness column's are dropped."""
        sums = torch.stack([pos[: self.num_classes], neg[: self.num_classes]]).detach()  # contiguous, for all_reduce
        if stats_are_synced(self.sync_stats):
            dist.all_reduce(sums)
        self.accumulate(sums)

    def accumulate(self, sums):
        """(2, K) positive / negative sums -> the buffers, and g recomputed."""
        self.pos_grad += sums[0].to(self.pos_grad)
        self.neg_grad += sums[1].to(self.neg_grad)
        self.pos_neg.copy_(self.pos_grad / (self.neg_grad + POS_NEG_EPS))

    def forward(self, logits, gt_classes, **extras):
        if gt_classes.numel() == 0 and stats_are_synced(self.sync_stats):
            # Take part in the other processes' all-reduce (and add their sums) with zeros.
            sums = self.pos_grad.new_zeros(2, self.num_classes)
            dist.all_reduce(sums)
            if bool(sums.any()):
                self.accumulate(sums)
        return super().forward(logits, gt_classes, **extras)

    def scores(self, logits):
        """(R, K + 1) -> (R, K + 1): p_j (1 - p_K) per class (p_j without objectness), p_K last."""
        probs = binary_probs(logits, self.activation)
        if not self.test_with_obj:
            return probs
        background = probs[:, self.num_classes :]
        return torch.cat([probs[:, : self.num_classes] * (1.0 - background), background], dim=1)

    def predict_classes(self, logits):
        """The class of highest test score, or background when none reaches 0.5."""
        best_prob, best = self.scores(logits)[:, : self.num_classes].max(dim=1)
        return torch.where(best_prob >= 0.5, best, torch.full_like(best, self.num_classes))

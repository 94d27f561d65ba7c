"""LOCE's Equilibrium Loss, EBL (Feng, Zhong, Huang, "Exploring Classification Equilibrium in
Long-Tailed Object Detection", ICCV 2021; released code: fcjian/LOCE (mmdetection 2.8),
``mmdet/models/losses/equilibrium_loss.py`` (the loss) and ``mmdet/models/roi_heads/loce_roi_head.py``
(the mean-score statistic, ``_compute_batch_mean_score`` / ``_update_mean_score``)).

Logits (R, K + 1), background last; init N(0, 0.01), bias 0 (mmdetection's ``BBoxHead``; the released
recipe fine-tunes the stage-1 classifier). A running mean classification score ``s`` (K + 1,)
adjusts the softmax:

    L = (1/R) sum_i CE(z_i + log s, gt_i),    i.e.  P_ij = s_j e^{z_ij} / sum_l s_l e^{z_il}

The paper writes this as a score-guided margin between the label y and every other class j,
``delta_yj = log(s_j / s_y)`` added to the negative logits, which is the same loss (the common
``-log s_y`` cancels in the softmax). A weak class (low s_y) gets a large margin against strong ones.

Statistic, updated every step **before** the loss uses it (as released), without gradient:

* per ground-truth object o of class c with at least one sampled foreground RoI: ``a_o`` = the mean,
  over the foreground RoIs matched to o, of the softmax probability of c over the K + 1 *unadjusted*
  logits (detached);
* the (class, a_o) entries are gathered from every process (released ``collect_tensor_from_dist``;
  ``SYNC``), so every process keeps the same s;
* for each class c with n_c entries: ``s_c <- alpha^{n_c} s_c + (1 - alpha^{n_c}) mean_o a_o``
  (alpha = 0.9); classes without entries keep s_c;
* background ``s_K = 0.01`` always (released ``bg_score``); every s starts at 0.01 (hard-coded).

RoIs are grouped into objects by (image, gt class, gt box) from the ``proposals`` the predictor
passes (detectron2 keeps no matched-gt index; two gt boxes of one class with identical coordinates
merge); called without ``proposals``, each foreground RoI counts as its own object (ours).
Test: the plain softmax over the K + 1 unadjusted logits (mmdetection's ``get_bboxes``).

Differences from the released code (ours):

* ``s`` is a buffer saved in checkpoints, with the K it was collected for (a checkpoint of another
  K is refused on load); the released ``self.mean_score`` is a plain tensor, re-initialised to 0.01
  on every start and re-warmed by the ``InitializerHook`` pass.
* The loss is ``cross_entropy(z + log max(s, 1e-12))``; the released code takes ``-log`` of the
  normalised product ``s e^{z - max z}`` (infinite when it underflows).
* The released memory-augmented feature sampling (MFS: extra memory RoI features in the box loss,
  and their scores in the statistic) is an ROI-head feature (:mod:`lt_det.modeling.feature_memory`,
  MODEL.ROI_HEADS.MFS); its entries reach this loss as one more "image" whose RoIs carry
  ``gt_object_ids``; its warm-up pass before training also warms ``s``
  (:class:`lt_det.engine.hooks.MFSWarmupHook`).
* The released per-image RoI indexing assumes exactly 512 sampled RoIs per image; here the
  grouping reads the proposals, whatever their number.
"""
from typing import List, Optional, Tuple

import torch
from torch.nn import functional as F

from detectron2.config import CfgNode as CN
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.structures import Instances
from detectron2.utils import comm

from . import fused
from .base import LTLoss
from .registry import register_loss
from .running_stats import RunningClassStatistics

# Proposals field naming each RoI's object for the statistic, where a gt box cannot (MFS's memory
# entries: their class, so the step's entries of one drawn class are one object).
OBJECT_IDS_FIELD = "gt_object_ids"
# Floor of s inside the log (ours): s reaches 0 only with alpha = 0 and a zero score.
MEAN_SCORE_MIN = 1e-12


def object_scores(
    logits: torch.Tensor, gt_classes: torch.Tensor, proposals: Optional[List[Instances]] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The step's (class, mean gt-class score) entries, one per ground-truth object.

    Args:
        logits: (R, K + 1) unadjusted logits; gt_classes: (R,) labels in [0, K] (K background).
        proposals: the images' sampled proposals (``gt_classes`` and, with a foreground RoI,
            ``gt_boxes``); their lengths must add up to R. None: each foreground RoI is an object.

    Returns:
        (O,) int64 classes and (O,) float mean softmax probability of the class over each object's
        foreground RoIs (detached).
    """
    num_classes = logits.shape[1] - 1
    fg = (gt_classes < num_classes).nonzero().squeeze(1)
    labels = gt_classes[fg]
    probs = F.softmax(logits.detach()[fg].float(), dim=1)  # foreground rows only: the others are unused
    roi_scores = probs.gather(1, labels[:, None]).squeeze(1)
    if proposals is None or len(fg) == 0:
        return labels, roi_scores
    lengths = [len(p) for p in proposals]
    if sum(lengths) != len(gt_classes):
        raise ValueError(
            f"LOCE: the proposals hold {sum(lengths)} RoIs but the logits {len(gt_classes)}; pass the "
            "step's sampled proposals (what the box predictor's losses() receives)."
        )
    image = torch.repeat_interleave(torch.arange(len(proposals), device=logits.device),
                                    torch.as_tensor(lengths, device=logits.device))
    boxes = cat([object_key(p) for p in proposals], dim=0)
    key = torch.cat([image[fg, None].double(), labels[:, None].double(), boxes[fg].double()], dim=1)
    objects, which = torch.unique(key, dim=0, return_inverse=True)
    sums = roi_scores.new_zeros(len(objects)).index_add_(0, which, roi_scores)
    counts = roi_scores.new_zeros(len(objects)).index_add_(0, which, torch.ones_like(roi_scores))
    return objects[:, 1].long(), sums / counts


def object_key(p: Instances) -> torch.Tensor:
    """(R_i, 4) what names each RoI's object within its image: its gt box, or, where the
    proposals carry ``gt_object_ids`` (MFS's memory entries: their class), that id."""
    if p.has(OBJECT_IDS_FIELD):
        ids = p.get(OBJECT_IDS_FIELD).to(p.gt_boxes.tensor.dtype)[:, None]
        return torch.cat([ids, ids.new_zeros(len(ids), 3)], dim=1)
    return p.gt_boxes.tensor if p.has("gt_boxes") else p.proposal_boxes.tensor


def gather_entries(labels: torch.Tensor, values: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Every process's (labels, values) concatenated in rank order (detectron2's ``all_gather``;
    released: ``collect_tensor_from_dist``); unchanged outside a multi-process run."""
    if comm.get_world_size() == 1:
        return labels, values
    gathered = comm.all_gather((labels.cpu(), values.cpu()))
    return (torch.cat([g[0] for g in gathered]).to(labels.device),
            torch.cat([g[1] for g in gathered]).to(values.device))


@register_loss("loce")
class EquilibriumLoss(RunningClassStatistics, LTLoss):
    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        momentum: float = 0.9,
        background_score: float = 0.01,
        initial_score: float = 0.01,
        sync: bool = True,
    ):
        super().__init__(num_classes)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"MODEL.LT_LOSS.LOCE.MOMENTUM (alpha) must be in [0, 1], got {momentum}")
        for key, value in (("BACKGROUND_SCORE", background_score), ("INITIAL_SCORE", initial_score)):
            if not 0.0 < value <= 1.0:
                raise ValueError(f"MODEL.LT_LOSS.LOCE.{key} must be in (0, 1], got {value}")
        self.momentum = momentum
        self.background_score = background_score
        self.sync = sync
        # s: mean classification score of each class, background last (K + 1,); saved in checkpoints.
        mean_score = torch.full((num_classes + 1,), float(initial_score))
        mean_score[num_classes] = background_score
        self.register_buffer("mean_score", mean_score)
        # Adds the scalar buffer stats_num_classes = K: a checkpoint of another K is refused on load.
        self.track_statistics("loce", ("mean_score",))

    @classmethod
    def add_config(cls, cfg):
        cfg.MODEL.LT_LOSS.LOCE = CN()
        # alpha: momentum of the per-class mean score, s_c <- alpha^n s_c + (1 - alpha^n) mean of the
        # step's n object scores (released train_cfg.rcnn.alpha = 0.9). 1.0 freezes s: softmax CE.
        cfg.MODEL.LT_LOSS.LOCE.MOMENTUM = 0.9
        # Mean score of the background column, fixed (released train_cfg.rcnn.bg_score = 0.01).
        cfg.MODEL.LT_LOSS.LOCE.BACKGROUND_SCORE = 0.01
        # Starting mean score of every class (hard-coded 0.01 in the released LoceRoIHead).
        cfg.MODEL.LT_LOSS.LOCE.INITIAL_SCORE = 0.01
        # Gather the step's object scores from every process before the update, so all keep the same
        # statistic (released: collect_tensor_from_dist). False: each process its own.
        cfg.MODEL.LT_LOSS.LOCE.SYNC = True

    @classmethod
    def from_config(cls, cfg):
        c = cfg.MODEL.LT_LOSS.LOCE
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "momentum": c.MOMENTUM,
            "background_score": c.BACKGROUND_SCORE,
            "initial_score": c.INITIAL_SCORE,
            "sync": c.SYNC,
        }

    @torch.no_grad()
    def update_mean_score(self, logits, gt_classes, proposals=None) -> None:
        """s_c <- alpha^n_c s_c + (1 - alpha^n_c) (mean of the n_c object scores of class c), then
        s_K = background score; ``logits`` are the unadjusted (R, K + 1) logits of the step."""
        labels, values = object_scores(logits, gt_classes, proposals)
        if self.sync:
            labels, values = gather_entries(labels, values)
        k = self.num_classes
        counts = torch.bincount(labels, minlength=k).to(self.mean_score)
        sums = torch.zeros_like(counts).index_add_(0, labels, values.to(counts))
        decay = torch.pow(torch.full_like(counts, self.momentum), counts)  # alpha^0 = 1: unseen classes keep s_c
        step_mean = sums / counts.clamp(min=1.0)
        self.mean_score[:k] = decay * self.mean_score[:k] + (1.0 - decay) * step_mean
        self.mean_score[k] = self.background_score

    def forward(self, logits, gt_classes, **extras):
        if gt_classes.numel() == 0 and self.sync:
            # An empty step still joins the processes' gather (the others wait on it).
            self.update_mean_score(logits.detach().float(), gt_classes)
        return super().forward(logits, gt_classes, **extras)

    def logit_shift(self) -> torch.Tensor:
        """(K + 1,) log s, the additive adjustment of the logits."""
        return self.mean_score.clamp(min=MEAN_SCORE_MIN).log()

    def loss(self, logits, gt_classes, proposals=None, **extras):
        """(R, K + 1) logits, (R,) labels [, proposals] -> update s, then mean_i CE(z_i + log s, gt_i)."""
        self.update_mean_score(logits, gt_classes, proposals)
        return F.cross_entropy(logits + self.logit_shift(), gt_classes, reduction="mean")

    def fused_loss(self, logits, gt_classes, proposals=None, **extras):
        self.update_mean_score(logits, gt_classes, proposals)
        return fused.softmax_ce(logits, gt_classes, logit_shift=self.logit_shift())

    def scores(self, logits):
        """(R, K + 1) -> softmax of the unadjusted logits."""
        return F.softmax(logits, dim=-1)

    def predict_classes(self, logits):
        return logits.argmax(dim=1)

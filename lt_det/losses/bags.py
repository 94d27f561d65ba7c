"""Balanced Group Softmax, BAGS (Li et al., "Overcoming Classifier Imbalance for Long-tail Object
Detection with Balanced Group Softmax", CVPR 2020; released code: FishYuLi/BalancedGroupSoftmax).

Groups by instance count with bin edges (10, 100, 1000): G1 n < 10, G2 10 <= n < 100,
G3 100 <= n < 1000, G4 n >= 1000, plus G0 = {background}. Every group has an extra "others"
slot. Logit layout (R, K + 1 + G + 1) for G foreground groups, group by group:
G0 = [background, others], then each Gk = [its classes in class-id order..., others].

Loss: per group, labels are remapped (a class of the group -> its position, anything else ->
others) and one softmax CE is taken over the group's slice. G0 uses every RoI; Gk keeps its
fg_k RoIs and samples ``int(beta * fg_k)`` of the "others" RoIs uniformly without replacement
(beta = 8); a group with fg_k = 0 contributes 0. Each group's CE is a mean over its selected RoIs;
the total is their sum.
Test: ``p_fg = softmax(G0)[others]``; class c of group k scores ``p_fg * softmax(Gk)[c]`` (others
dropped, no renormalisation); background = ``softmax(G0)[background]``.
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.nn import functional as F

from detectron2.config import CfgNode as CN
from detectron2.config import configurable

from lt_det.data.class_stats import ClassStats

from . import fused
from .base import LTLoss, class_stats_for
from .registry import register_loss


def group_of_classes(instance_count: Sequence[int], bin_edges: Sequence[int]) -> List[np.ndarray]:
    """Class ids (sorted) of each foreground group: ``np.digitize`` of n_j over ``bin_edges``."""
    group = np.digitize(np.asarray(instance_count), np.asarray(bin_edges), right=False)
    return [np.nonzero(group == g)[0] for g in range(len(bin_edges) + 1)]


@register_loss("bags")
class BalancedGroupSoftmax(LTLoss):
    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        instance_count: Sequence[int],
        bin_edges: Sequence[int] = (10, 100, 1000),
        others_ratio: float = 8.0,
    ):
        super().__init__(num_classes)
        self.others_ratio = others_ratio
        groups = group_of_classes(instance_count, bin_edges)
        self.num_groups = len(groups)  # foreground groups
        # For group g (0 = background group): its slice start/size in the logits, and the
        # label map (K + 1,) from a detectron2 label to the position inside the slice.
        starts, sizes, label_maps = [0], [2], [torch.ones(num_classes + 1, dtype=torch.long)]
        label_maps[0][num_classes] = 0
        for ids in groups:
            starts.append(starts[-1] + sizes[-1])
            sizes.append(len(ids) + 1)
            label_map = torch.full((num_classes + 1,), len(ids), dtype=torch.long)
            label_map[torch.as_tensor(ids, dtype=torch.long)] = torch.arange(len(ids))
            label_maps.append(label_map)
        self.starts, self.sizes = starts, sizes
        self.register_buffer("label_maps", torch.stack(label_maps), persistent=False)  # (G + 1, K + 1)
        class_group = torch.empty(num_classes, dtype=torch.long)  # (K,) group of each class
        rows = torch.empty(num_classes, dtype=torch.long)  # (K,) classifier row of each class
        for g, ids in enumerate(groups, start=1):
            ids = torch.as_tensor(ids, dtype=torch.long)
            class_group[ids] = g
            rows[ids] = starts[g] + torch.arange(len(ids))
        self.register_buffer("class_group", class_group, persistent=False)
        self.register_buffer("rows", rows, persistent=False)

    @classmethod
    def add_config(cls, cfg):
        cfg.MODEL.LT_LOSS.BAGS = CN()
        # Group edges over instance counts: [0, 10), [10, 100), [100, 1000), [1000, inf) (BAGS).
        cfg.MODEL.LT_LOSS.BAGS.BIN_EDGES = (10, 100, 1000)
        # beta: "others" RoIs sampled per own RoI in each group (BAGS code: 8; supp. Table 1: 1).
        cfg.MODEL.LT_LOSS.BAGS.OTHERS_RATIO = 8.0

    @classmethod
    def from_config(cls, cfg, class_stats: Optional[ClassStats] = None):
        stats = class_stats_for(cfg, "bags", class_stats)
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "instance_count": stats.instance_count,
            "bin_edges": cfg.MODEL.LT_LOSS.BAGS.BIN_EDGES,
            "others_ratio": cfg.MODEL.LT_LOSS.BAGS.OTHERS_RATIO,
        }

    def num_logits(self, num_classes: int) -> int:
        return num_classes + 1 + self.num_groups + 1

    def group_logits(self, logits: torch.Tensor, g: int) -> torch.Tensor:
        """(R, L) -> (R, size_g) slice of group g (0 = background group)."""
        return logits[:, self.starts[g] : self.starts[g] + self.sizes[g]]

    def classifier_rows(self) -> torch.Tensor:
        """Class c of group g is row ``start_g + position of c in g``: not the first K rows.
        On the CPU, like the default (callers index checkpoint tensors with it)."""
        return self.rows.cpu()

    def selected_rois(self, gt_classes) -> List[Tuple[int, torch.Tensor, torch.Tensor]]:
        """Per group g taking part this step: (g, (R,) labels inside g, (S_g,) selected RoI ids).

        G0 takes every RoI; Gk its own RoIs plus ``int(beta * own)`` "others" RoIs drawn uniformly
        without replacement (``torch.randperm``); a group with no own RoI is left out.
        """
        selected = [(0, self.label_maps[0][gt_classes], torch.arange(len(gt_classes), device=gt_classes.device))]
        for g in range(1, self.num_groups + 1):
            labels = self.label_maps[g][gt_classes]
            others = self.sizes[g] - 1
            own = (labels != others).nonzero().squeeze(1)
            if len(own) == 0:
                continue
            rest = (labels == others).nonzero().squeeze(1)
            num_others = min(int(self.others_ratio * len(own)), len(rest))
            picked = rest[torch.randperm(len(rest), device=rest.device)[:num_others]]
            selected.append((g, labels, torch.cat([own, picked])))
        return selected

    def loss(self, logits, gt_classes, **extras):
        """(R, K + G + 2) logits, (R,) labels -> sum over groups of the mean CE of selected RoIs."""
        return sum(
            F.cross_entropy(self.group_logits(logits, g)[rois], labels[rois])
            for g, labels, rois in self.selected_rois(gt_classes)
        )

    def fused_loss(self, logits, gt_classes, **extras):
        groups = []
        for g, labels, rois in self.selected_rois(gt_classes):
            weights = logits.new_zeros(len(gt_classes))
            weights[rois] = 1.0 / len(rois)
            groups.append(fused.SoftmaxGroup(self.starts[g], self.sizes[g], labels, weights))
        return fused.grouped_softmax_ce(logits, groups)

    def scores(self, logits):
        """(R, K + G + 2) -> (R, K + 1): p_fg * within-group softmax, background = p_bg."""
        p0 = F.softmax(self.group_logits(logits, 0), dim=1)
        probs = torch.empty(logits.shape[0], self.num_classes + 1, dtype=p0.dtype, device=logits.device)
        for g in range(1, self.num_groups + 1):
            ids = (self.class_group == g).nonzero().squeeze(1)
            if len(ids):
                within = F.softmax(self.group_logits(logits, g), dim=1)[:, :-1]
                probs[:, ids] = within * p0[:, 1:2]
        probs[:, self.num_classes] = p0[:, 0]
        return probs

"""LOCE's memory-augmented feature sampling, MFS (Feng, Zhong, Huang, "Exploring Classification
Equilibrium in Long-Tailed Object Detection", ICCV 2021; released code: fcjian/LOCE,
``mmdet/models/roi_heads/loce_roi_head.py`` and its memory / sampling helpers).

Each class keeps a queue of RoI features of its ground-truth objects. Every training step:

1. every gt box (x1, y1, x2, y2), width w, height h, gives 16 jittered boxes, one per sign pattern
   (s1..s4) in {-1, +1}^4: ``(x1 + s1 u1 w/6, y1 + s2 u2 h/6, x2 + s3 u3 w/6, y2 + s4 u4 h/6)``,
   u ~ U(0, 1) per sign pattern and coordinate (one draw per image, as released), clamped to the
   image;
2. their RoIAlign features (detached) enter their class's queue, a ring of ``QUEUE_SIZE`` = 80
   entries (each: the feature, its box and its gt box, for the regression target), so a class
   keeps its latest 80;
3. ``SAMPLED_CLASSES`` = 8 of the K classes are drawn with replacement with probability
   proportional to ``1 / (s_c + 1e-7)``, s the LOCE loss's mean classification score before this
   step's update, and ``SAMPLES_PER_CLASS`` = 4 stored entries of each, uniformly with
   replacement (a drawn class with an empty queue gives none);
4. these (at most 32) features go through the box head with the step's RoIs and join the
   classification and box-regression losses (weight 1; the losses' divisors count them) and
   LOCE's statistic, one object per sampled class; not the mask loss.

Shapes: features (N, C, S, S) (256 x 7 x 7 for the FPN box pooler), boxes (N, 4) XYXY.

Before training (the released ``InitializerHook`` with its ``DistributedBalancedSampler``), a
warm-up pass runs the training forward, without a step and with BatchNorm in eval mode, over
``WARMUP_IMAGES_PER_CLASS`` = 5 images of every class per process (:func:`warmup_image_indices`;
:class:`lt_det.engine.hooks.MFSWarmupHook`): it fills the queues and warms s. It runs at every
start, as released, since the queues are not saved in checkpoints (an exact resume of an MFS run
is therefore not bit-exact).

As released: a drawn class whose queue is empty contributes nothing that step; a class keeps the
first 80 of one step's entries; the jitter's 16 x 4 fractions u are drawn once per image. Ours:
boxes are clamped to [0, width] x [0, height] (detectron2's continuous coordinates; mmdetection:
width - 1, height - 1). Memory: the queues stay in host memory, as released: K x 80 x 256 x 7 x 7
float32 is 4.8 GB for LVIS v1 when every class is stored (a class's queue is allocated when it
first gets an entry).
"""
from typing import Dict, NamedTuple, Optional, Sequence

import torch
from torch import nn

from detectron2.config import CfgNode as CN

__all__ = ["ClassFeatureMemory", "MemoryBatch", "add_mfs_config", "jitter_boxes", "memory_from_config",
           "warmup_image_indices"]

# The 16 sign patterns (s1, s2, s3, s4) of the jitter, (16, 4).
SIGN_PATTERNS = torch.tensor([[1.0 if (p >> bit) & 1 else -1.0 for bit in range(4)] for p in range(16)])
JITTER_FRACTION = 1.0 / 6.0  # the jitter's scale, w / 6 and h / 6 (released)
SCORE_EPS = 1e-7  # sampling weight 1 / (s_c + eps) (released)


def jitter_boxes(boxes: torch.Tensor, image_size: Sequence[int]) -> torch.Tensor:
    """(G, 4) XYXY gt boxes of one image -> (G * 16, 4) jittered boxes: box g's 16 rows are
    16g .. 16g + 15, one per sign pattern, each coordinate moved by ``s u (w or h) / 6``, then
    clamped to the image ``(height, width)``. The (16, 4) fractions u ~ U(0, 1) are drawn once for
    the image and shared by its boxes (released)."""
    num = len(boxes)
    w = (boxes[:, 2] - boxes[:, 0])[:, None, None]
    h = (boxes[:, 3] - boxes[:, 1])[:, None, None]
    scale = torch.cat([w, h, w, h], dim=2) * JITTER_FRACTION  # (G, 1, 4)
    u = torch.rand(16, 4, device=boxes.device, dtype=boxes.dtype)[None]  # torch's global generator
    jittered = boxes[:, None, :] + SIGN_PATTERNS.to(boxes)[None] * u * scale
    height, width = image_size
    jittered[..., 0::2] = jittered[..., 0::2].clamp(0, width)
    jittered[..., 1::2] = jittered[..., 1::2].clamp(0, height)
    return jittered.reshape(num * 16, 4)


class MemoryBatch(NamedTuple):
    """Entries drawn from the memory for one step (M of them)."""

    features: torch.Tensor  # (M, C, S, S)
    classes: torch.Tensor  # (M,) int64
    boxes: torch.Tensor  # (M, 4) the jittered boxes (the "proposals")
    gt_boxes: torch.Tensor  # (M, 4) their gt boxes (the regression targets)


class ClassFeatureMemory(nn.Module):
    """Per-class ring buffers of RoI features, kept on the CPU (not in the state dict)."""

    def __init__(self, queue_size: int = 80, sampled_classes: int = 8, samples_per_class: int = 4):
        super().__init__()
        for name, value in (("QUEUE_SIZE", queue_size), ("SAMPLED_CLASSES", sampled_classes),
                            ("SAMPLES_PER_CLASS", samples_per_class)):
            if value < 1:
                raise ValueError(f"MODEL.ROI_HEADS.MFS.{name} must be at least 1, got {value}")
        self.queue_size = queue_size
        self.sampled_classes = sampled_classes
        self.samples_per_class = samples_per_class
        self.features: Dict[int, torch.Tensor] = {}  # class -> (Q, C, S, S)
        self.boxes: Dict[int, torch.Tensor] = {}  # class -> (Q, 8): box, gt box
        self.count: Dict[int, int] = {}  # entries stored (<= Q)
        self.next: Dict[int, int] = {}  # ring position of the next write

    def stored(self, c: int) -> int:
        return self.count.get(c, 0)

    @torch.no_grad()
    def push(self, features: torch.Tensor, classes: torch.Tensor, boxes: torch.Tensor, gt_boxes: torch.Tensor) -> None:
        """Appends N entries in order, each to its class's ring; of one push, a class keeps its
        first Q entries (released ``[:queue_size]``)."""
        features, classes = features.detach().cpu(), classes.cpu()
        pairs = torch.cat([boxes, gt_boxes], dim=1).detach().cpu()
        for c in classes.unique().tolist():
            rows = (classes == c).nonzero().squeeze(1)[: self.queue_size]
            if c not in self.features:
                self.features[c] = features.new_zeros(self.queue_size, *features.shape[1:])
                self.boxes[c] = pairs.new_zeros(self.queue_size, 8)
                self.count[c], self.next[c] = 0, 0
            slots = (self.next[c] + torch.arange(len(rows))) % self.queue_size
            self.features[c][slots] = features[rows]
            self.boxes[c][slots] = pairs[rows]
            self.next[c] = int(slots[-1] + 1) % self.queue_size
            self.count[c] = min(self.queue_size, self.count[c] + len(rows))

    @torch.no_grad()
    def sample(self, mean_score: torch.Tensor, num_classes: int, device) -> Optional[MemoryBatch]:
        """Draws ``sampled_classes`` of the ``num_classes`` classes (with replacement, probability
        proportional to ``1 / (s_c + 1e-7)``) and ``samples_per_class`` stored entries of each
        (uniformly, with replacement); a drawn class with no entry gives none. ``mean_score``:
        (>= K,) s. None when nothing was drawn."""
        weights = 1.0 / (mean_score.detach().float().cpu()[:num_classes] + SCORE_EPS)
        drawn = torch.multinomial(weights, self.sampled_classes, replacement=True).tolist()
        features, boxes, labels = [], [], []
        for c in drawn:
            if self.stored(c) == 0:
                continue
            index = torch.randint(self.count[c], (self.samples_per_class,))
            features.append(self.features[c][index])
            boxes.append(self.boxes[c][index])
            labels.append(torch.full((self.samples_per_class,), c, dtype=torch.long))
        if not labels:
            return None
        boxes = torch.cat(boxes).to(device)
        return MemoryBatch(torch.cat(features).to(device), torch.cat(labels).to(device), boxes[:, :4], boxes[:, 4:])


def warmup_image_indices(class_to_images: Sequence[Sequence[int]], per_class: int, rank: int = 0,
                         world_size: int = 1) -> list:
    """The released warm-up sampler (``DistributedBalancedSampler``): for each class, its images
    (in dataset order) repeated cyclically to ``per_class * world_size``, of which process
    ``rank`` takes positions ``[rank * per_class, (rank + 1) * per_class)``; the classes' lists
    concatenated. ``class_to_images``: per class, the indices of the images containing it."""
    total = per_class * world_size
    out = []
    for images in class_to_images:
        cycled = (list(images) * -(-total // len(images)))[:total]
        out += cycled[rank * per_class:(rank + 1) * per_class]
    return out


def memory_from_config(cfg) -> Optional[ClassFeatureMemory]:
    """The memory MODEL.ROI_HEADS.MFS asks for, or None."""
    mfs = cfg.MODEL.ROI_HEADS.MFS
    if not mfs.ENABLED:
        return None
    if cfg.MODEL.LT_LOSS.NAME != "loce":
        raise ValueError(f"MODEL.ROI_HEADS.MFS samples classes by LOCE's mean classification score: it needs "
                         f"MODEL.LT_LOSS.NAME 'loce', not {cfg.MODEL.LT_LOSS.NAME!r}")
    return ClassFeatureMemory(mfs.QUEUE_SIZE, mfs.SAMPLED_CLASSES, mfs.SAMPLES_PER_CLASS)


def add_mfs_config(cfg) -> None:
    cfg.MODEL.ROI_HEADS.MFS = CN()
    # LOCE's memory-augmented feature sampling (lt_det.modeling.feature_memory): extra gt-object
    # RoI features of weak classes in every step's box losses. Needs MODEL.LT_LOSS.NAME "loce" and
    # LTStandardROIHeads. Released LOCE recipe: on.
    cfg.MODEL.ROI_HEADS.MFS.ENABLED = False
    cfg.MODEL.ROI_HEADS.MFS.QUEUE_SIZE = 80  # entries kept per class (released)
    cfg.MODEL.ROI_HEADS.MFS.SAMPLED_CLASSES = 8  # classes drawn per step, with replacement (released)
    cfg.MODEL.ROI_HEADS.MFS.SAMPLES_PER_CLASS = 4  # entries drawn per drawn class (released)
    # Images per class and process of the warm-up pass before training (released InitializerHook:
    # 5); 0 skips it (the queues then fill as training sees the classes).
    cfg.MODEL.ROI_HEADS.MFS.WARMUP_IMAGES_PER_CLASS = 5

"""Fixed AP's inference mode (Dave et al., "Evaluating Large-Vocabulary Object Detectors: The Devil
is in the Details", 2021; their code: achalddave/large-vocab-devil).

Fixed AP has no per-image cap and evaluates each category's top K = 10,000 detections over the
whole split (:mod:`lt_det.evaluation.fixed_ap`). A standard model keeps 300 detections per image
across classes, far fewer than K per class for most classes, which makes Fixed AP artificially
low. :func:`fast_rcnn_inference_top_k_per_class` replaces detectron2's ``fast_rcnn_inference`` in
that mode: per image, per-class NMS, then each class's top ``topk_per_class`` detections, with no
cap across classes.

Shorthand: R_i boxes of image i, K foreground classes, D_i detections of image i after NMS.
"""
from typing import List, Tuple

import torch

from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference_single_image
from detectron2.structures import Instances

__all__ = ["fast_rcnn_inference_top_k_per_class"]


def _top_k_per_class_instances(instances: Instances, k: int) -> torch.Tensor:
    """Indices (ascending) of each class's top ``k`` in ``instances`` of D_i detections, already
    sorted by decreasing score."""
    classes = instances.pred_classes
    if len(classes) == 0:
        return torch.zeros(0, dtype=torch.long, device=classes.device)
    order = torch.argsort(classes, stable=True)  # within a class, keeps the score order
    sorted_classes = classes[order]
    is_start = torch.ones_like(sorted_classes, dtype=torch.bool)
    is_start[1:] = sorted_classes[1:] != sorted_classes[:-1]
    start_pos = torch.cummax(torch.where(is_start, torch.arange(len(order), device=classes.device), 0), 0).values
    rank = torch.arange(len(order), device=classes.device) - start_pos
    return torch.sort(order[rank < k]).values


def fast_rcnn_inference_top_k_per_class(
    boxes: List[torch.Tensor],
    scores: List[torch.Tensor],
    image_shapes: List[Tuple[int, int]],
    score_thresh: float,
    nms_thresh: float,
    topk_per_class: int,
) -> Tuple[List[Instances], List[torch.Tensor]]:
    """detectron2's ``fast_rcnn_inference`` for Fixed AP: per-class top-k, no per-image cap.

    Args:
        boxes: per image, (R_i, K * 4) or (R_i, 4) predicted boxes (as detectron2's).
        scores: per image, (R_i, K + 1) class scores, last column background.
        image_shapes, score_thresh, nms_thresh: as detectron2's ``fast_rcnn_inference``.
        topk_per_class: detections kept per class per image after NMS.

    Returns:
        as detectron2's ``fast_rcnn_inference``: per image, ``Instances`` (``pred_boxes``,
        ``scores``, ``pred_classes``) sorted by decreasing score, and the kept RoI indices.
    """
    results, kept = [], []
    for b, s, shape in zip(boxes, scores, image_shapes):
        # topk_per_image=-1: detectron2 skips its cap across classes; NMS output is score-sorted.
        instances, roi_index = fast_rcnn_inference_single_image(b, s, shape, score_thresh, nms_thresh, -1)
        keep = _top_k_per_class_instances(instances, topk_per_class)
        results.append(instances[keep])
        kept.append(roi_index[keep])
    return results, kept

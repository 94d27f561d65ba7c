"""Fixed AP's selection: per-class top-k over the split (evaluation), and the inference mode
without a per-image cap (modeling)."""
import numpy as np
import torch

from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference

from lt_det.evaluation.fixed_ap import top_k_per_class
from lt_det.modeling.fixed_ap_inference import fast_rcnn_inference_top_k_per_class


def test_top_k_per_class_keeps_each_class_best_with_ties_in_order():
    cats = np.array([5, 7, 5, 5, 7, 5, 9])
    scores = np.array([0.2, 0.9, 0.8, 0.8, 0.1, 0.5, 0.3])
    # class 5: 0.8 (index 2), 0.8 (index 3, tie: later), 0.5, 0.2 -> top 2 = {2, 3}
    # class 7: 0.9, 0.1 -> both; class 9: 0.3 -> kept
    keep = top_k_per_class(cats, scores, 2)
    assert np.flatnonzero(keep).tolist() == [1, 2, 3, 4, 6]
    # ties keep the earlier detection: with k = 1 class 5 keeps index 2, not 3
    assert np.flatnonzero(top_k_per_class(cats, scores, 1)).tolist() == [1, 2, 6]
    assert top_k_per_class(np.zeros(0, int), np.zeros(0), 3).shape == (0,)


def _separated_boxes(num_rois, num_classes):
    """RoIs on a grid that never overlap (NMS keeps all), same box for every class."""
    xy = torch.stack([torch.arange(num_rois) % 20 * 20.0, torch.arange(num_rois) // 20 * 20.0], 1)
    boxes = torch.cat([xy, xy + 10], 1)
    return boxes.repeat(1, num_classes)


def test_inference_keeps_per_class_top_k_without_per_image_cap():
    num_rois, num_classes, k = 400, 2, 250
    torch.manual_seed(0)
    boxes = _separated_boxes(num_rois, num_classes)
    probs = torch.rand(num_rois, num_classes) * 0.9 + 0.05
    scores = torch.cat([probs, torch.zeros(num_rois, 1)], 1)  # background column last
    shape = (400, 400)

    (standard,), _ = fast_rcnn_inference([boxes], [scores], [shape], 0.01, 0.5, 300)
    assert len(standard) == 300  # detectron2: 300 per image across classes

    (fixed,), (rois,) = fast_rcnn_inference_top_k_per_class([boxes], [scores], [shape], 0.01, 0.5, k)
    assert len(fixed) == num_classes * k  # 500 > 300: no per-image cap
    for c in range(num_classes):
        mine = fixed.scores[fixed.pred_classes == c]
        expected = torch.sort(probs[:, c], descending=True).values[:k]
        torch.testing.assert_close(torch.sort(mine, descending=True).values, expected)
    # kept RoI indices point at the RoIs the scores came from
    torch.testing.assert_close(fixed.scores, probs[rois, fixed.pred_classes])
    assert torch.all(fixed.scores[:-1] >= fixed.scores[1:])  # sorted, as detectron2's output

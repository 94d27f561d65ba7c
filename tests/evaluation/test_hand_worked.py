"""AP worked out by hand on a tiny split, for every backend.

Two 100x100 images; categories 1 (frequent), 2 (common), 3 (rare, no ground truth anywhere).

image 1: ground truth A = [0,0,10,10] and B = [20,20,10,10] of class 1; class 2 is a verified
         negative (neg_category_ids = [2]).
image 2: ground truth C = [0,0,20,20] of class 2, which is not exhaustively annotated there.

detections (score):
  image 1: class 1 on A (0.9), class 1 on empty space (0.8), class 1 on B (0.7),
           class 2 on empty space (0.95): a false positive, class 2 is a negative of image 1,
           class 3 on A (0.99): ignored, class 3 is neither positive nor negative in image 1.
  image 2: class 2 on C (0.6), class 2 on empty space (0.97): ignored, not a false positive,
           since class 2 is not exhaustive in image 2.

Every box matches at IoU 1 or 0, so all ten IoU thresholds give the same precision.

class 1, ranked TP FP TP: recall 1/2, 1/2, 1; precision 1, 1/2, 2/3; interpolated (max to the
  right) 1, 2/3, 2/3. Recall thresholds 0.00..0.50 (51 of 101) read precision 1, 0.51..1.00
  (50) read 2/3: AP_1 = (51 + 50 * 2/3) / 101 = 253/303.
class 2, ranked ignored, FP, TP: cumulative TP 0, 0, 1 and FP 0, 1, 1; recall 0, 0, 1; precision
  0, 0, 1/2, interpolated 1/2 everywhere: AP_2 = 1/2.
class 3: no ground truth: undefined (NaN), so APr is NaN.
All objects are small (area <= 32^2): APs = AP, APm = APl = NaN.
"""
import math
import os

import numpy as np
import pytest

from lt_det.evaluation.backends import BACKENDS, get_backend
from lt_det.evaluation.lvis_eval import LVIS_MAX_DETS_PER_IMAGE
from lt_det.evaluation.metrics import per_class_ap, summarize

from .conftest import write_fixture

AP_1, AP_2 = 253 / 303, 1 / 2


def _box_ann(ann_id, image_id, cat, box):
    x, y, w, h = box
    return {"id": ann_id, "image_id": image_id, "category_id": cat, "bbox": box, "area": w * h,
            "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]}


def _image(image_id, neg, not_exhaustive):
    return {"id": image_id, "height": 100, "width": 100, "neg_category_ids": neg,
            "not_exhaustive_category_ids": not_exhaustive}


GT = {
    "images": [_image(1, [2], []), _image(2, [], [2])],
    "categories": [{"id": 1, "name": "one", "frequency": "f", "image_count": 200},
                   {"id": 2, "name": "two", "frequency": "c", "image_count": 50},
                   {"id": 3, "name": "three", "frequency": "r", "image_count": 3}],
    "annotations": [_box_ann(1, 1, 1, [0, 0, 10, 10]), _box_ann(2, 1, 1, [20, 20, 10, 10]),
                    _box_ann(3, 2, 2, [0, 0, 20, 20])],
}


def _det(image_id, cat, box, score):
    import pycocotools.mask as mask_util

    x, y, w, h = box
    rle = mask_util.merge(mask_util.frPyObjects([[x, y, x + w, y, x + w, y + h, x, y + h]], 100, 100))
    rle["counts"] = rle["counts"].decode("ascii")
    return {"image_id": image_id, "category_id": cat, "bbox": box, "score": score, "segmentation": rle}


DETS = [
    _det(1, 1, [0, 0, 10, 10], 0.9), _det(1, 1, [50, 50, 10, 10], 0.8), _det(1, 1, [20, 20, 10, 10], 0.7),
    _det(1, 2, [60, 60, 10, 10], 0.95), _det(1, 3, [0, 0, 10, 10], 0.99),
    _det(2, 2, [0, 0, 20, 20], 0.6), _det(2, 2, [70, 70, 10, 10], 0.97),
]
FREQ = ["f", "c", "r"]


def _run(tmp_path, backend, task, dets, max_dets=LVIS_MAX_DETS_PER_IMAGE, top_k=None):
    gt_json, _ = write_fixture(str(tmp_path), GT, dets, top_k_per_category=top_k)
    precision = get_backend(backend)(gt_json, os.path.join(str(tmp_path), f"lvis_results_{task}.json"), task, max_dets)
    return summarize(precision, FREQ), per_class_ap(precision)


@pytest.mark.parametrize("task", ["bbox", "segm"])
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_hand_worked_ap(tmp_path, backend, task):
    metrics, per_class = _run(tmp_path, backend, task, DETS)
    ap = (AP_1 + AP_2) / 2
    np.testing.assert_allclose(per_class, [AP_1, AP_2, np.nan], rtol=0, atol=1e-12, equal_nan=True)
    for k in ("AP", "AP50", "AP75", "APs"):
        assert metrics[k] == pytest.approx(ap, abs=1e-12), k
    assert metrics["APf"] == pytest.approx(AP_1, abs=1e-12)
    assert metrics["APc"] == pytest.approx(AP_2, abs=1e-12)
    assert all(math.isnan(metrics[k]) for k in ("APm", "APl", "APr"))


# 298 more class-3 detections at 0.999 in image 1 (ignored there, as class 3 is unannotated) push
# image 1 to 303 detections. The per-image cap keeps its top 300 across classes: the 299 class-3
# ones and class 2's 0.95, so all of class 1's are dropped: AP_1 = 0 (its ground truth remains).
# A per-(image, class) cap (COCO-style tools) would keep them and give the first test's AP.
FLOOD = [_det(1, 3, [40 + i % 50, 40, 5, 5], 0.999) for i in range(298)]


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_cap_is_per_image_across_classes(tmp_path, backend):
    metrics, per_class = _run(tmp_path, backend, "bbox", DETS + FLOOD)
    np.testing.assert_allclose(per_class, [0.0, AP_2, np.nan], rtol=0, atol=1e-12, equal_nan=True)
    assert metrics["AP"] == pytest.approx((0 + AP_2) / 2, abs=1e-12)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_fixed_ap_has_no_per_image_cap(tmp_path, backend):
    """Fixed AP (no cap, 10,000 per class) on the same 303 detections: class 1 keeps all three."""
    metrics, _ = _run(tmp_path, backend, "bbox", DETS + FLOOD, max_dets=-1, top_k=10000)
    assert metrics["AP"] == pytest.approx((AP_1 + AP_2) / 2, abs=1e-12)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_fixed_ap_top_k_per_class_over_the_split(tmp_path, backend):
    """k = 1: each class keeps its single best detection over both images, before federated
    filtering (as Dave et al.'s script). Class 1 keeps A at 0.9: recall 1/2 at precision 1, so
    51 of 101 recall thresholds read 1: AP_1 = 51/101. Class 2 keeps 0.97 in image 2, which is
    ignored there: nothing counts, AP_2 = 0."""
    metrics, per_class = _run(tmp_path, backend, "bbox", DETS, max_dets=-1, top_k=1)
    np.testing.assert_allclose(per_class, [51 / 101, 0.0, np.nan], rtol=0, atol=1e-12, equal_nan=True)
    assert metrics["AP"] == pytest.approx((51 / 101 + 0) / 2, abs=1e-12)

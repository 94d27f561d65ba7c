"""LVIS AP backends: lvis-api (the reference) and two fast implementations of the same protocol.

A backend is a function ``(gt_json, results_json, iou_type, max_dets_per_image) -> precision``:

* ``gt_json``: path of an LVIS-format annotation file.
* ``results_json``: path of an LVIS results file holding only the fields of ``iou_type``
  ("bbox": ``bbox``; "segm": ``segmentation`` and no ``bbox``, so that segm area ranges use the
  mask area, as detectron2 arranges for lvis-api). :mod:`lt_det.evaluation.results_io` writes them.
* ``max_dets_per_image``: lvis-api's ``LVISResults(max_dets=...)``: each image's top detections by
  score across all categories (300 for LVIS); -1 for no cap (Fixed AP).
* returns lvis-api's ``eval["precision"]``: float64 (T, R, K, A) = (10 IoU thresholds 0.50:0.95,
  101 recall thresholds, K categories in ascending id order, 4 area ranges all/small/medium/
  large), -1 where a category has no ground truth in that area range.

Every backend must agree with lvis-api to 1e-4 on every metric (``tests/evaluation``); the default
is the fastest that does (``tools/benchmark_eval.py``). Known traps, each handled here:

* faster-coco-eval's ``maxDets`` caps detections per (image, category), not per image, so its
  input is capped to each image's top ``max_dets_per_image`` first.
* hotcoco, like lvis-api, takes segm areas from ``bbox`` when a result has one: hence the
  segm-only results file.
* hotcoco prints as it evaluates; its stdout is silenced and the evaluator logs one table.

Measured on 5,000 images x 1,203 classes x 300 detections (``tools/benchmark_eval.py``): hotcoco
took 1/115 of lvis-api's wall time for bbox and 1/33 for segm, identical metrics; faster-coco-eval
1/3.7 and 1/1.8, metrics equal to 1e-16.
"""
import contextlib
import io
import json
import logging
from collections import Counter
from typing import Callable, Dict

import numpy as np

__all__ = ["BACKENDS", "BACKENDS_READING_FREQUENCY", "DEFAULT_BACKEND", "get_backend"]

Backend = Callable[[str, str, str, int], np.ndarray]


def _lvis_api(gt_json: str, results_json: str, iou_type: str, max_dets_per_image: int) -> np.ndarray:
    from lvis import LVIS, LVISEval, LVISResults  # needs np.float: lt_det.compat restores it

    gt = LVIS(gt_json)
    lvis_eval = LVISEval(gt, LVISResults(gt, results_json, max_dets=max_dets_per_image), iou_type)
    lvis_eval.evaluate()
    lvis_eval.accumulate()
    return np.asarray(lvis_eval.eval["precision"], dtype=np.float64)


def _hotcoco(gt_json: str, results_json: str, iou_type: str, max_dets_per_image: int) -> np.ndarray:
    import hotcoco

    with contextlib.redirect_stdout(io.StringIO()):
        gt = hotcoco.COCO(gt_json)
        # hotcoco.LVISResults applies lvis-api's per-image cap across categories (-1: none).
        dt = hotcoco.LVISResults(gt, results_json, max_dets=max_dets_per_image)
        lvis_eval = hotcoco.LVISEval(gt, dt, iou_type)
        lvis_eval.evaluate()
        lvis_eval.accumulate()
    return np.asarray(lvis_eval.eval["precision"], dtype=np.float64)[..., -1]  # (T, R, K, A, 1)


def _cap_per_image(results: list, max_dets: int) -> list:
    """Each image's top ``max_dets`` by score across categories, ties in file order (lvis-api)."""
    by_image: Dict[int, list] = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r)
    return [r for rs in by_image.values() for r in sorted(rs, key=lambda r: r["score"], reverse=True)[:max_dets]]


def _faster_coco_eval(gt_json: str, results_json: str, iou_type: str, max_dets_per_image: int) -> np.ndarray:
    from faster_coco_eval import COCO, COCOeval_faster

    with open(results_json) as f:
        results = json.load(f)
    if max_dets_per_image >= 0:
        results = _cap_per_image(results, max_dets_per_image)
    gt = COCO(gt_json)
    lvis_eval = COCOeval_faster(gt, gt.loadRes(results), iou_type, lvis_style=True, print_function=logging.debug)
    # maxDets is per (image, category) here and sizes C++ buffers: the largest such group keeps
    # every detection left after the per-image cap above.
    lvis_eval.params.maxDets = [max(Counter((r["image_id"], r["category_id"]) for r in results).values())]
    lvis_eval.evaluate()
    lvis_eval.accumulate()
    return np.asarray(lvis_eval.eval["precision"], dtype=np.float64)[..., -1]  # (T, R, K, A, 1)


BACKENDS: Dict[str, Backend] = {
    "lvis": _lvis_api,
    "hotcoco": _hotcoco,
    "faster_coco_eval": _faster_coco_eval,
}
# The fastest backend equal to lvis-api to 1e-4 on every metric (tools/benchmark_eval.py).
DEFAULT_BACKEND = "hotcoco"
# Those that read each category's "frequency" from the annotation file itself (KeyError without it);
# hotcoco takes no frequency from it: lt_det computes APr / APc / APf from its own groups.
BACKENDS_READING_FREQUENCY = ("lvis", "faster_coco_eval")


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise KeyError(f"Unknown LVIS evaluation backend {name!r}; available: {sorted(BACKENDS)}")
    return BACKENDS[name]

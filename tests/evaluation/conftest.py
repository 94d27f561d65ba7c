"""Synthetic LVIS fixtures shared by the evaluation tests.

Each fixture is an annotation json and results files per task, written the way the evaluator
writes them (:func:`lt_det.evaluation.results_io.write_task_files`).
"""
import json
import os
from typing import Dict, List

import numpy as np
import pycocotools.mask as mask_util
import pytest

from lt_det.evaluation.lvis_eval import GroundTruthInfo
from lt_det.evaluation.results_io import write_task_files

from .synthetic_lvis import make_detections, make_lvis_split

NUM_IMAGES, NUM_CLASSES = 24, 16


def perfect_detections(gt: Dict) -> List[Dict]:
    """Every ground truth found exactly (box and mask), distinct scores."""
    out = []
    for i, a in enumerate(gt["annotations"]):
        img = next(im for im in gt["images"] if im["id"] == a["image_id"])
        rle = mask_util.merge(mask_util.frPyObjects(a["segmentation"], img["height"], img["width"]))
        rle["counts"] = rle["counts"].decode("ascii")
        out.append({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]),
                    "score": 1.0 - i * 1e-4, "segmentation": rle})
    return out


def make_fixture(kind: str) -> (Dict, List[Dict]):
    """(annotations, results) of one kind:

    * noisy: 320 detections per image (over the 300 cap): jittered true positives, duplicates,
      false positives of annotated, negative, not-exhaustive and unannotated classes;
    * perfect: the ground truth itself;
    * ties: noisy with scores rounded to 0.05 steps, so many detections tie;
    * sparse: noisy without any detection in half of the images or of a third of the classes.
    (Entirely empty results never reach a backend; lvis-api itself crashes on them.)
    """
    gt = make_lvis_split(NUM_IMAGES, NUM_CLASSES, seed=3, image_size=(96, 128), max_objects=6, num_negatives=4,
                         not_exhaustive_prob=0.3)
    if kind == "perfect":
        return gt, perfect_detections(gt)
    dets = make_detections(gt, dets_per_image=320, seed=4, recall=0.7)
    if kind == "ties":
        for d in dets:
            d["score"] = round(d["score"] * 20) / 20
    if kind == "sparse":
        dets = [d for d in dets if d["image_id"] % 2 and d["category_id"] % 3]
    return gt, dets


def write_fixture(tmp_dir: str, gt: Dict, dets: List[Dict], top_k_per_category=None) -> (str, Dict[str, int]):
    """Writes gt.json and the per-task results files into tmp_dir; returns (gt path, counts)."""
    os.makedirs(tmp_dir, exist_ok=True)
    gt_json = os.path.join(tmp_dir, "gt.json")
    with open(gt_json, "w") as f:
        json.dump(gt, f)
    info = GroundTruthInfo.load(gt_json)
    counts = write_task_files(lambda: iter(dets), tmp_dir, info.image_sizes, [c["id"] for c in info.categories],
                              top_k_per_category=top_k_per_category)
    return gt_json, counts


def frequencies(gt: Dict) -> np.ndarray:
    return np.array([c["frequency"] for c in sorted(gt["categories"], key=lambda c: c["id"])])


@pytest.fixture(scope="session")
def fixture_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("lvis_fixtures"))

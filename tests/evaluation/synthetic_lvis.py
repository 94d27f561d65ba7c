"""Synthetic LVIS-format splits and detections: the evaluation tests' fixtures, also used by
``tools/benchmark_eval.py``.

The generated split has what LVIS evaluation depends on: a long-tailed class distribution with
LVIS's r/c/f groups, per-image ``neg_category_ids`` and ``not_exhaustive_category_ids``, mask
annotations (polygons, ``area`` = mask area, as LVIS stores it) and small/medium/large objects.
Detections mix true positives (jittered ground truth), duplicates, false positives of annotated,
negative, not-exhaustive and unannotated classes, and can exceed 300 per image.
"""
from typing import Dict, List, Tuple

import numpy as np
import pycocotools.mask as mask_util

__all__ = ["make_lvis_split", "make_detections"]


def _octagon(x: float, y: float, w: float, h: float) -> List[float]:
    """A convex octagon inscribed in the box: a mask that is neither the box nor empty."""
    dx, dy = w * 0.25, h * 0.25
    pts = [(x + dx, y), (x + w - dx, y), (x + w, y + dy), (x + w, y + h - dy),
           (x + w - dx, y + h), (x + dx, y + h), (x, y + h - dy), (x, y + dy)]
    return [float(c) for p in pts for c in p]


def _rle(polygon: List[float], height: int, width: int) -> dict:
    rle = mask_util.merge(mask_util.frPyObjects([polygon], height, width))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _random_box(rng: np.random.Generator, height: int, width: int) -> Tuple[float, float, float, float]:
    # log-uniform side lengths give small, medium and large objects
    w = float(np.exp(rng.uniform(np.log(4), np.log(width * 0.9))))
    h = float(np.exp(rng.uniform(np.log(4), np.log(height * 0.9))))
    x = float(rng.uniform(0, width - w))
    y = float(rng.uniform(0, height - h))
    return x, y, w, h


def make_lvis_split(
    num_images: int,
    num_classes: int,
    seed: int = 0,
    image_size: Tuple[int, int] = (480, 640),
    max_objects: int = 8,
    num_negatives: int = 10,
    not_exhaustive_prob: float = 0.2,
) -> Dict:
    """An LVIS-format annotation dict.

    Category ids are 1..K with one gap (id K//2 + 1 is skipped) so that code which confuses
    category ids with contiguous indices fails. Frequency groups follow LVIS v1's proportions
    (about 28% rare, 38% common, 34% frequent); class sampling is Zipf-like so frequent classes
    have many instances and rare ones few.
    """
    rng = np.random.default_rng(seed)
    height, width = image_size
    cat_ids = [i + 1 + (i >= num_classes // 2) for i in range(num_classes)]
    groups = rng.choice(["r", "c", "f"], size=num_classes, p=[0.28, 0.38, 0.34])
    weight = {"r": 0.05, "c": 0.5, "f": 5.0}
    class_p = np.array([weight[g] for g in groups]) * rng.uniform(0.5, 1.5, num_classes)
    class_p /= class_p.sum()

    images, annotations = [], []
    for img_id in range(1, num_images + 1):
        n = int(rng.integers(1, max_objects + 1))
        classes = rng.choice(num_classes, size=n, p=class_p)
        present = sorted({cat_ids[c] for c in classes})
        absent = np.setdiff1d(cat_ids, present)
        neg = sorted(int(c) for c in rng.choice(absent, size=min(num_negatives, len(absent)), replace=False))
        not_exhaustive = sorted(c for c in present if rng.random() < not_exhaustive_prob)
        images.append({
            "id": img_id, "height": height, "width": width,
            "coco_url": f"http://images.cocodataset.org/val2017/{img_id:012d}.jpg",
            "neg_category_ids": neg, "not_exhaustive_category_ids": not_exhaustive,
        })
        for c in classes:
            x, y, w, h = _random_box(rng, height, width)
            poly = _octagon(x, y, w, h)
            area = float(mask_util.area(_rle(poly, height, width)))
            annotations.append({
                "id": len(annotations) + 1, "image_id": img_id, "category_id": cat_ids[c],
                "bbox": [x, y, w, h], "area": area, "segmentation": [poly],
            })

    categories = []
    for c, (cid, g) in enumerate(zip(cat_ids, groups)):
        anns = [a for a in annotations if a["category_id"] == cid]
        categories.append({
            "id": cid, "name": f"class_{cid}", "frequency": str(g),
            "image_count": len({a["image_id"] for a in anns}), "instance_count": len(anns),
        })
    return {"images": images, "annotations": annotations, "categories": categories}


def make_detections(
    gt: Dict,
    dets_per_image: int = 300,
    seed: int = 0,
    recall: float = 0.8,
    jitter: float = 0.1,
    with_masks: bool = True,
    float32_scores: bool = True,
) -> List[Dict]:
    """LVIS-format results (``image_id, category_id, bbox, score[, segmentation]``) for ``gt``.

    Per image: each ground truth is found with probability ``recall`` (box jittered by up to
    ``jitter`` of its size, sometimes twice: a duplicate), the rest are false positives whose class
    is drawn from the image's positive, negative and not-exhaustive classes or any class
    (unannotated: lvis-api drops them). ``float32_scores`` rounds scores to float32 as a model's
    output is, which creates tied scores on large splits.
    """
    rng = np.random.default_rng(seed)
    cat_ids = np.array([c["id"] for c in gt["categories"]])
    anns_by_image: Dict[int, List[Dict]] = {}
    for a in gt["annotations"]:
        anns_by_image.setdefault(a["image_id"], []).append(a)

    results = []
    for img in gt["images"]:
        height, width = img["height"], img["width"]
        anns = anns_by_image.get(img["id"], [])
        dets = []
        for a in anns:
            for _ in range(1 + (rng.random() < 0.2)):
                if rng.random() >= recall:
                    continue
                x, y, w, h = a["bbox"]
                dx, dy, dw, dh = rng.uniform(-jitter, jitter, 4) * [w, h, w, h]
                bw, bh = max(w + dw, 1.0), max(h + dh, 1.0)
                dets.append((a["category_id"], (x + dx, y + dy, bw, bh), rng.uniform(0.3, 1.0)))
        pos = sorted({a["category_id"] for a in anns})
        pools = [pos, img["neg_category_ids"], img["not_exhaustive_category_ids"], cat_ids]
        while len(dets) < dets_per_image:
            pool = pools[int(rng.integers(len(pools)))]
            if len(pool) == 0:
                continue
            dets.append((int(rng.choice(pool)), _random_box(rng, height, width), rng.uniform(0.0, 0.9)))
        for cid, box, score in dets[:dets_per_image]:
            x, y, w, h = (float(v) for v in box)
            if float32_scores:
                score = float(np.float32(score))
            det = {"image_id": img["id"], "category_id": int(cid), "bbox": [x, y, w, h], "score": float(score)}
            if with_masks:
                det["segmentation"] = _rle(_octagon(x, y, w, h), height, width)
            results.append(det)
    return results

"""The real LVIS per-class statistics in the metadata of ``lvis_v1_train`` / ``lvis_v0.5_train``
(importable by test modules).

tests/data/*_cat_info.json hold id, name, synset, frequency, image_count and instance_count of
every category, taken from the ``categories`` field of the LVIS v1 / v0.5 train annotations; they
stand in for the LVIS train jsons, which the tests do not need: the metadata get_class_stats would
read from them.

COCO-LT's configs train on ``coco_lt_train``, which tools/build_coco_lt.py writes from COCO (not
here): its stand-in statistics are the builder's targets, 80 classes with the instance counts of
the LVIS v0.5 ranks they are aligned with (image counts set equal to them).
"""
import json
import os

from detectron2.data import MetadataCatalog

from lt_det.data.coco_lt import aligned_lvis_ranks
from lt_det.data.datasets import frequency_group

LVIS_STATS = {
    "lvis_v1_train": ("data/lvis_v1_train_cat_info.json", 99388),
    "lvis_v0.5_train": ("data/lvis_v0.5_train_cat_info.json", 56740),
}


def set_lvis_statistics() -> None:
    """Writes the statistics into the LVIS train sets' metadata (where they are not set yet)."""
    for name, (path, num_images) in LVIS_STATS.items():
        meta = MetadataCatalog.get(name)
        if not hasattr(meta, "class_statistics"):
            with open(os.path.join(os.path.dirname(__file__), path)) as f:
                meta.set(class_statistics=json.load(f), num_annotated_images=num_images)


def set_coco_lt_stand_in_statistics() -> None:
    """Stand-in statistics for ``coco_lt_train`` (where not set yet): see the module docstring."""
    meta = MetadataCatalog.get("coco_lt_train")
    if hasattr(meta, "class_statistics"):
        return
    with open(os.path.join(os.path.dirname(__file__), LVIS_STATS["lvis_v0.5_train"][0])) as f:
        counts = sorted((c["instance_count"] for c in json.load(f)), reverse=True)
    aligned = [counts[r] for r in aligned_lvis_ranks(80, len(counts))]
    records = [{"id": i + 1, "name": f"coco_{i + 1}", "image_count": n, "instance_count": n,
                "frequency": frequency_group(n)} for i, n in enumerate(aligned)]
    meta.set(class_statistics=records, num_annotated_images=9100)

"""The real LVIS per-class statistics in the metadata of ``lvis_v1_train`` / ``lvis_v0.5_train``
(importable by test modules).

tests/data/*_cat_info.json hold id, name, synset, frequency, image_count and instance_count of
every category, taken from the ``categories`` field of the LVIS v1 / v0.5 train annotations; they
stand in for the LVIS train jsons, which the tests do not need: the metadata get_class_stats would
read from them.
"""
import json
import os

from detectron2.data import MetadataCatalog

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

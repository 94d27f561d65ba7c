"""Datasets, class statistics and samplers.

Importing this package registers nothing: :func:`lt_det.builtin.setup_environment` registers the
built-in names.
"""
from .class_stats import ClassStats, get_class_stats
from .coco_lt import build_coco_lt, register_coco_lt, to_lvis_format
from .datasets import (
    load_lvis_format_json,
    register_lvis_format,
    register_synthetic_lt,
    reregister_builtin_lvis,
)
from .heldout import register_heldout_split, split_heldout
from .mapper import LTDatasetMapper

__all__ = [
    "ClassStats",
    "get_class_stats",
    "build_coco_lt",
    "register_coco_lt",
    "to_lvis_format",
    "load_lvis_format_json",
    "register_lvis_format",
    "register_synthetic_lt",
    "reregister_builtin_lvis",
    "register_heldout_split",
    "split_heldout",
    "LTDatasetMapper",
]

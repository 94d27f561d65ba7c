"""Datasets, class statistics and samplers.

Importing this package routes detectron2's built-in LVIS names through lt_det's loader and
registers the synthetic set under ``$DETECTRON2_DATASETS/synthetic_lt`` (default
``datasets/synthetic_lt``, relative to the working directory as detectron2's own built-ins are).
"""
import os

from .class_stats import ClassStats, get_class_stats
from .datasets import (
    load_lvis_format_json,
    register_lvis_format,
    register_synthetic_lt,
    reregister_builtin_lvis,
)
from .mapper import LTDatasetMapper

__all__ = [
    "ClassStats",
    "get_class_stats",
    "load_lvis_format_json",
    "register_lvis_format",
    "register_synthetic_lt",
    "LTDatasetMapper",
]

reregister_builtin_lvis()
register_synthetic_lt(os.path.join(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")), "synthetic_lt"))

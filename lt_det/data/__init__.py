"""Datasets, class statistics and samplers.

Importing this package registers nothing: :func:`lt_det.builtin.setup_environment` registers the
built-in names.
"""
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
    "reregister_builtin_lvis",
    "LTDatasetMapper",
]

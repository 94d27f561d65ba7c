"""LVIS evaluation: lvis-api semantics with fast backends, Fixed AP, per-class results."""
from .backends import BACKENDS, DEFAULT_BACKEND, get_backend
from .config import add_evaluation_config
from .fixed_ap import top_k_per_class
from .lvis_eval import GroundTruthInfo, evaluate_lvis, format_metrics_table
from .lvis_evaluator import LVISEvaluator, build_lvis_evaluator
from .metrics import METRICS, per_class_ap, summarize

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "METRICS",
    "GroundTruthInfo",
    "LVISEvaluator",
    "add_evaluation_config",
    "build_lvis_evaluator",
    "evaluate_lvis",
    "format_metrics_table",
    "get_backend",
    "per_class_ap",
    "summarize",
    "top_k_per_class",
]

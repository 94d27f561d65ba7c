"""LVIS summary metrics and per-class AP from a precision array, as lvis-api's ``summarize``.

``precision`` is lvis-api's float64 (T, R, K, A) array (see :mod:`lt_det.evaluation.backends`):
T = 10 IoU thresholds 0.50:0.95, R = 101 recall thresholds, K categories in ascending id order,
A = 4 area ranges (all, small, medium, large); -1 marks "no ground truth here".

lvis-api averages every entry that is not -1 and reports -1 when none is; we report NaN instead,
so that an undefined metric (say APr on a split without rare classes) cannot be mistaken for a
score. Values are fractions here; the evaluator reports percent, as detectron2 does.
"""
from typing import Dict, Sequence

import numpy as np

__all__ = ["METRICS", "summarize", "per_class_ap"]

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")
_IOU_INDEX = {"AP50": 0, "AP75": 5}  # thresholds 0.50, 0.55, ..., 0.95
_AREA_INDEX = {"APs": 1, "APm": 2, "APl": 3}
_GROUPS = {"APr": "r", "APc": "c", "APf": "f"}


def _mean_defined(p: np.ndarray) -> float:
    defined = p[p > -1]
    return float(defined.mean()) if defined.size else float("nan")


def summarize(precision: np.ndarray, frequency: Sequence[str]) -> Dict[str, float]:
    """The nine LVIS AP metrics (fractions; NaN when undefined).

    Args:
        precision: (T, R, K, A).
        frequency: (K,) "r" / "c" / "f" of each category, from the evaluated json's categories
            (lvis-api groups by that field).
    """
    frequency = np.asarray(frequency)
    if precision.ndim != 4 or precision.shape[2] != len(frequency):
        raise ValueError(f"precision {precision.shape} does not match {len(frequency)} categories")
    out = {"AP": _mean_defined(precision[:, :, :, 0])}
    for name, t in _IOU_INDEX.items():
        out[name] = _mean_defined(precision[t, :, :, 0])
    for name, a in _AREA_INDEX.items():
        out[name] = _mean_defined(precision[:, :, :, a])
    for name, group in _GROUPS.items():
        out[name] = _mean_defined(precision[:, :, frequency == group, 0])
    return {k: out[k] for k in METRICS}


def per_class_ap(precision: np.ndarray) -> np.ndarray:
    """(K,) AP of each category over all areas and IoU 0.50:0.95; NaN for a category without
    ground truth in the split."""
    p = precision[:, :, :, 0]
    defined = p > -1
    total = np.where(defined, p, 0.0).sum(axis=(0, 1))
    count = defined.sum(axis=(0, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)

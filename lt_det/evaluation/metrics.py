"""LVIS summary metrics and per-class AP from a precision array, as lvis-api's ``summarize``.

``precision`` is lvis-api's float64 (T, R, K, A) array (see :mod:`lt_det.evaluation.backends`):
T = 10 IoU thresholds 0.50:0.95, R = 101 recall thresholds, K categories in ascending id order,
A = 4 area ranges (all, small, medium, large); -1 marks "no ground truth here".

lvis-api averages every entry that is not -1 and reports -1 when none is; we report NaN instead,
so that an undefined metric (say APr on a split without rare classes) cannot be mistaken for a
score. Values are fractions here; the evaluator reports percent, as detectron2 does.
"""
import math
from typing import Dict, Optional, Sequence

import numpy as np

__all__ = ["METRICS", "INSTANCE_BINS", "instance_bin", "summarize", "per_class_ap"]

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")
_IOU_INDEX = {"AP50": 0, "AP75": 5}  # thresholds 0.50, 0.55, ..., 0.95
_AREA_INDEX = {"APs": 1, "APm": 2, "APl": 3}
_GROUPS = {"APr": "r", "APc": "c", "APf": "f"}
# The bins of training instances BAGS reports next to APr / APc / APf (Li et al., CVPR 2020,
# Table 2): AP1 over the classes with [1, 10) training instances, AP2 [10, 100), AP3
# [100, 1000), AP4 [1000, ∞). A class without training instances is in no bin.
INSTANCE_BINS = {"AP1": (1, 10), "AP2": (10, 100), "AP3": (100, 1000), "AP4": (1000, math.inf)}


def instance_bin(count: int) -> Optional[str]:
    """The name of the bin of a class with ``count`` training instances (None for 0)."""
    return next((name for name, (lo, hi) in INSTANCE_BINS.items() if lo <= count < hi), None)


def _mean_defined(p: np.ndarray) -> float:
    defined = p[p > -1]
    return float(defined.mean()) if defined.size else float("nan")


def summarize(precision: np.ndarray, frequency: Sequence[str],
              train_instance_count: Optional[Sequence[int]] = None) -> Dict[str, float]:
    """The nine LVIS AP metrics (fractions; NaN when undefined), and AP1-AP4 when the training
    instance counts are given.

    Args:
        precision: (T, R, K, A).
        frequency: (K,) "r" / "c" / "f" of each category, from the evaluated json's categories
            (lvis-api groups by that field).
        train_instance_count: (K,) training instances of each category (the bins of
            :data:`INSTANCE_BINS`); a bin's AP averages its classes' entries as APr does.
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
    keys = METRICS
    if train_instance_count is not None:
        counts = np.asarray(train_instance_count)
        if counts.shape != frequency.shape:
            raise ValueError(f"{len(counts)} training instance counts for {len(frequency)} categories")
        bins = np.array([instance_bin(int(c)) for c in counts])
        for name in INSTANCE_BINS:
            out[name] = _mean_defined(precision[:, :, bins == name, 0])
        keys = METRICS + tuple(INSTANCE_BINS)
    return {k: out[k] for k in keys}


def per_class_ap(precision: np.ndarray) -> np.ndarray:
    """(K,) AP of each category over all areas and IoU 0.50:0.95; NaN for a category without
    ground truth in the split."""
    p = precision[:, :, :, 0]
    defined = p > -1
    total = np.where(defined, p, 0.0).sum(axis=(0, 1))
    count = defined.sum(axis=(0, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)

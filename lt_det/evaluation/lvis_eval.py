"""One LVIS evaluation from result records to metrics, per-class tables and plots.

Shared by the detectron2 evaluator (:mod:`lt_det.evaluation.lvis_evaluator`) and the standalone
command (``tools/evaluate_lvis_results.py``), so both report the same thing.
"""
import json
import logging
import math
import os
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .backends import BACKENDS_READING_FREQUENCY, DEFAULT_BACKEND, get_backend
from .metrics import INSTANCE_BINS, METRICS, per_class_ap, summarize
from .per_class import per_class_rows, save_per_class
from .results_io import write_task_files

__all__ = ["LVIS_MAX_DETS_PER_IMAGE", "GroundTruthInfo", "evaluate_lvis", "format_metrics_table"]

logger = logging.getLogger(__name__)

# LVIS protocol: each image's top 300 detections by score across categories (lvis-api default).
LVIS_MAX_DETS_PER_IMAGE = 300


@dataclass(frozen=True)
class GroundTruthInfo:
    """What the evaluation needs from the annotation json besides what the backend reads."""

    json_file: str
    image_sizes: Dict[int, Tuple[int, int]]  # image id: (height, width)
    categories: Tuple[dict, ...]  # ascending id: id, name, frequency[, image_count]
    frequency_in_json: bool = True  # False: taken from the training statistics

    @classmethod
    def load(cls, json_file: str, train_frequency: Optional[Sequence[str]] = None) -> "GroundTruthInfo":
        """Reads ``json_file``; the frequency group (r/c/f) of each category comes from the json, or,
        where its categories have none, from ``train_frequency`` (K, ascending category id order:
        the training set's groups, which is what LVIS's own groups are)."""
        with open(json_file) as f:
            data = json.load(f)
        cats = sorted(({k: c[k] for k in ("id", "name", "frequency", "image_count") if k in c}
                       for c in data["categories"]), key=lambda c: c["id"])
        in_json = all("frequency" in c for c in cats)
        if not in_json:
            if train_frequency is None or len(train_frequency) != len(cats):
                missing = [c["id"] for c in cats if "frequency" not in c]
                raise KeyError(f"{json_file}: categories {missing[:10]} have no 'frequency' (r/c/f), which LVIS "
                               "evaluation needs for APr/APc/APf, and no training statistics of the same "
                               f"{len(cats)} classes give it")
            cats = [{**c, "frequency": str(g)} for c, g in zip(cats, train_frequency)]
        images = {img["id"]: (img["height"], img["width"]) for img in data["images"]}
        return cls(json_file, images, tuple(cats), in_json)

    def json_image_counts(self) -> List[int]:
        """The annotation json's own per-category ``image_count`` (LVIS files carry the train split's)."""
        missing = [c["id"] for c in self.categories if "image_count" not in c]
        if missing:
            raise KeyError(f"{self.json_file}: categories {missing[:10]} have no 'image_count'; "
                           "pass the training image counts explicitly")
        return [c["image_count"] for c in self.categories]

    def json_instance_counts(self) -> Optional[List[int]]:
        """The json's own per-category ``instance_count`` (LVIS files carry the train split's), or
        None when some category lacks it."""
        if any("instance_count" not in c for c in self.categories):
            return None
        return [c["instance_count"] for c in self.categories]


def _nan_metrics(with_bins: bool) -> Dict[str, float]:
    return {m: float("nan") for m in METRICS + (tuple(INSTANCE_BINS) if with_bins else ())}


def evaluate_lvis(
    gt: GroundTruthInfo,
    open_records: Callable[[], Iterator[dict]],
    out_dir: str,
    tasks: Sequence[str],
    backend: str,
    fixed_ap_dets_per_class: Optional[int] = None,
    train_image_count: Optional[Sequence[int]] = None,
    save_per_class_results: bool = True,
    decode_rle: bool = True,
    train_instance_count: Optional[Sequence[int]] = None,
) -> Dict[str, Dict[str, float]]:
    """Evaluates the records; returns detectron2-style metrics in percent.

    Every record is validated first (:mod:`lt_det.evaluation.results_checks`); ``decode_rle=False``
    skips only the decoding of the masks' runs, for masks pycocotools' encoder wrote in this process
    (the evaluator's own), which are well-formed by construction.

    Returns ``{task: {"AP", "AP50", ..., "APf"}}`` for the standard protocol (300 per image), with
    BAGS's AP1-AP4 when the training instance counts are known (``train_instance_count``, else
    the json's ``instance_count``), and,
    with ``fixed_ap_dets_per_class``, also ``{task + "_fixed_ap": ...}`` (no per-image cap, that
    many detections per category over the split). A task without detections gets NaN metrics and
    a warning.

    Writes ``out_dir/lvis_results_{task}.json`` (and ``out_dir/fixed_ap/`` for Fixed AP) and, with
    ``save_per_class_results``, the per-class CSV/JSON/plots of :mod:`lt_det.evaluation.per_class`.
    """
    evaluate = get_backend(backend)
    if not gt.frequency_in_json and backend in BACKENDS_READING_FREQUENCY:
        raise ValueError(f"The '{backend}' backend reads each category's 'frequency' from {gt.json_file}, which "
                         f"has none; evaluate with another backend ({DEFAULT_BACKEND}) or add it to the json")
    cat_ids = [c["id"] for c in gt.categories]
    frequency = [c["frequency"] for c in gt.categories]
    if train_instance_count is None:
        train_instance_count = gt.json_instance_counts()
    if train_instance_count is not None and len(train_instance_count) != len(cat_ids):
        raise ValueError(f"{len(train_instance_count)} training instance counts for {len(cat_ids)} categories")
    if save_per_class_results:
        if train_image_count is None:
            train_image_count = gt.json_image_counts()
        if len(train_image_count) != len(cat_ids):
            raise ValueError(f"{len(train_image_count)} training image counts for {len(cat_ids)} categories")

    runs = [("", out_dir, LVIS_MAX_DETS_PER_IMAGE, None)]
    if fixed_ap_dets_per_class is not None:
        runs.append(("_fixed_ap", os.path.join(out_dir, "fixed_ap"), -1, fixed_ap_dets_per_class))
    results: Dict[str, Dict[str, float]] = {}
    for suffix, run_dir, max_dets, top_k in runs:
        os.makedirs(run_dir, exist_ok=True)
        counts = write_task_files(open_records, run_dir, gt.image_sizes, cat_ids, top_k_per_category=top_k,
                                  decode_rle=decode_rle)
        ap_by_task = {}
        for task in tasks:
            if counts.get(task, 0) == 0:
                logger.warning(f"No {task} detections to evaluate: {task}{suffix} metrics are NaN.")
                results[task + suffix] = _nan_metrics(train_instance_count is not None)
                ap_by_task[task] = np.full(len(cat_ids), np.nan)
                continue
            logger.info(f"Evaluating {task}{suffix}: {counts[task]} detections, backend '{backend}'")
            precision = evaluate(gt.json_file, os.path.join(run_dir, f"lvis_results_{task}.json"), task, max_dets)
            results[task + suffix] = {k: v * 100 for k, v in summarize(precision, frequency, train_instance_count).items()}
            ap_by_task[task] = per_class_ap(precision)
        if save_per_class_results:
            rows = per_class_rows(gt.categories, train_image_count, ap_by_task, train_instance_count)
            save_per_class(rows, {t: results[t + suffix] for t in tasks}, run_dir, "lvis" + suffix)
    return results


def format_metrics_table(results: Dict[str, Dict[str, float]]) -> str:
    """One row per task, one column per metric (percent, 2 decimals)."""
    from tabulate import tabulate

    keys = list(METRICS) + [k for k in INSTANCE_BINS if any(k in m for m in results.values())]
    rows = [[task] + [("nan" if math.isnan(m.get(k, math.nan)) else f"{m[k]:.2f}") for k in keys]
            for task, m in results.items()]
    return tabulate(rows, headers=["task", *keys], tablefmt="pipe", stralign="right",
                    disable_numparse=True)

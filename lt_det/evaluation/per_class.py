"""Per-class AP with each class's frequency group and training image count: CSV, JSON and plots.

Files written next to the metrics (``{prefix}`` is "lvis" or "lvis_fixed_ap"):

* ``{prefix}_per_class.csv`` / ``.json``: one row per category: ``category_id``, ``name``,
  ``frequency`` (r/c/f), ``train_image_count``, ``train_instance_count`` and ``instance_bin``
  (AP1-AP4's bin) when the instance counts are known, then ``AP_{task}`` per task (percent,
  empty / null when the category has no ground truth in the evaluated split).
* ``{prefix}_ap_vs_image_count_{task}.png``: per-class AP against training image count (log x),
  coloured by group.
* ``{prefix}_ap_by_group_{task}.png``: AP, APr, APc, APf as bars.
"""
import csv
import json
import math
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from .metrics import instance_bin

__all__ = ["per_class_rows", "save_per_class"]

_GROUP_COLOURS = {"r": "tab:red", "c": "tab:orange", "f": "tab:blue"}


def per_class_rows(
    categories: Sequence[dict], train_image_count: Sequence[int], ap_by_task: Dict[str, np.ndarray],
    train_instance_count: Optional[Sequence[int]] = None,
) -> List[dict]:
    """Rows for the CSV/JSON.

    Args:
        categories: the evaluated json's categories in ascending id order (``id``, ``name``,
            ``frequency``).
        train_image_count: (K,) training images per category, same order.
        ap_by_task: {task: (K,) AP as a fraction, NaN when undefined}.
        train_instance_count: (K,) training instances per category, same order; adds the
            columns ``train_instance_count`` and ``instance_bin`` (AP1-AP4's bin, None for 0).
    """
    rows = []
    for k, cat in enumerate(categories):
        row = {"category_id": cat["id"], "name": cat.get("name", str(cat["id"])),
               "frequency": cat["frequency"], "train_image_count": int(train_image_count[k])}
        if train_instance_count is not None:
            row["train_instance_count"] = int(train_instance_count[k])
            row["instance_bin"] = instance_bin(int(train_instance_count[k]))
        for task, ap in ap_by_task.items():
            row[f"AP_{task}"] = None if math.isnan(ap[k]) else float(ap[k] * 100)
        rows.append(row)
    return rows


def scatter_by_group(xs: Sequence[float], ys: Sequence[float], groups: Sequence[str], ylabel: str, title: str,
                     path: str) -> None:
    """One point per class: ``ys`` against ``xs`` (training image counts, log axis), coloured by
    frequency group. Points whose y is None are left out."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = False
    for group, colour in _GROUP_COLOURS.items():
        pts = [(x, y) for x, y, g in zip(xs, ys, groups) if g == group and y is not None]
        if pts:
            x, y = zip(*pts)
            # a class absent from training (count 0) is drawn at 1 so that it stays on a log axis
            ax.scatter(np.maximum(x, 1), y, s=8, c=colour, label=group, alpha=0.7)
            drawn = True
    ax.set_xscale("log")
    ax.set_xlabel("training images of the class (log scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if drawn:
        ax.legend(title="group")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_ap_vs_count(rows: List[dict], task: str, path: str) -> None:
    scatter_by_group([r["train_image_count"] for r in rows], [r[f"AP_{task}"] for r in rows],
                     [r["frequency"] for r in rows], f"AP ({task}, %)",
                     f"Per-class {task} AP against training image count", path)


def _plot_ap_by_group(metrics: Dict[str, float], task: str, path: str) -> None:
    import matplotlib.pyplot as plt

    names = ["AP", "APr", "APc", "APf"]
    values = [metrics[n] for n in names]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    bars = ax.bar(names, [0.0 if math.isnan(v) else v for v in values],
                  color=["tab:gray"] + list(_GROUP_COLOURS.values()))
    for bar, v in zip(bars, values):
        ax.annotate("n/a" if math.isnan(v) else f"{v:.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom")
    ax.set_ylabel(f"{task} AP (%)")
    ax.set_title(f"{task} AP by frequency group")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_per_class(rows: List[dict], metrics: Dict[str, Dict[str, float]], out_dir: str, prefix: str) -> List[str]:
    """Writes the CSV, the JSON and two plots per task; returns the paths written.

    ``metrics`` is the evaluator's {task: {metric: percent}}.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on training machines
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, f"{prefix}_per_class.csv"), os.path.join(out_dir, f"{prefix}_per_class.json")]
    with open(paths[0], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(paths[1], "w") as f:
        json.dump(rows, f, indent=1)
    for task in metrics:
        paths.append(os.path.join(out_dir, f"{prefix}_ap_vs_image_count_{task}.png"))
        _plot_ap_vs_count(rows, task, paths[-1])
        paths.append(os.path.join(out_dir, f"{prefix}_ap_by_group_{task}.png"))
        _plot_ap_by_group(metrics[task], task, paths[-1])
    return paths

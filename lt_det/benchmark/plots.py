"""The figures the long-tail papers use, drawn from the benchmark's results (PNG, matplotlib Agg).

* ``ap_by_group.png``: APr / APc / APf of every method side by side (mean over seeds, error bar
  one std), the form of every LVIS table.
* ``ap_vs_image_count.png``: per-class AP against training image count (log x) for chosen
  methods, each class's AP averaged over seeds.
* ``classifier_norms.png``: classifier weight norm against class training image count for the
  stage-1 model and its decoupled versions (BALMS Fig. 1, Kang et al. Fig. 2); each method's
  norms divided by their mean, so shapes compare across scales.
* ``logit_grad_ratio.png``: EQL's Figure 1: per class, ordered by training instance count, the
  accumulated positive and negative gradient magnitude on the class's logit over training, and
  their ratio, for softmax / sigmoid CE, EQL and GOL (first seed's run).
"""
import math
import os
from typing import Dict, List, Sequence

import numpy as np

GROUP_COLOURS = {"r": "tab:red", "c": "tab:orange", "f": "tab:blue"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ok(results: List[Dict], method: str) -> List[Dict]:
    return sorted((r for r in results if r["method"] == method and r["status"] == "ok"), key=lambda r: r["seed"])


def ap_by_group(rows: List[Dict], path: str) -> str:
    plt = _plt()
    rows = [r for r in rows if r["finished"]]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(8, 0.55 * len(rows)), 4))
    for i, (metric, colour) in enumerate((("APr", "tab:red"), ("APc", "tab:orange"), ("APf", "tab:blue"))):
        mean = [r[metric]["mean"] for r in rows]
        std = [0 if not math.isfinite(r[metric]["std"]) else r[metric]["std"] for r in rows]
        ax.bar(x + (i - 1) * 0.27, mean, 0.27, yerr=std, color=colour, label=metric, capsize=2)
    ax.set_xticks(x)
    ax.set_xticklabels([r["method"] for r in rows], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("bbox AP (%)")
    ax.set_title("AP per frequency group (mean ± std over seeds)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _per_class_mean(cells: List[Dict], key: str = "AP_bbox"):
    rows = cells[0]["per_class"]
    values = np.array([[np.nan if r.get(key) is None else r[key] for r in c["per_class"]] for c in cells], float)
    return rows, np.nanmean(values, axis=0)


def _against_image_count(curves: Dict[str, tuple], ylabel: str, title: str, path: str) -> str:
    """One line per method, {method: (image_count (K,), value (K,))}, against log image count."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for method, (count, value) in curves.items():
        order = np.argsort(count)
        ax.plot(count[order], value[order], marker="o", markersize=3, linewidth=1, label=method)
    ax.set_xscale("log")
    ax.set_xlabel("training images of the class")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def ap_vs_image_count(results: List[Dict], methods: Sequence[str], path: str) -> str:
    curves = {}
    for method in methods:
        cells = [c for c in _ok(results, method) if c.get("per_class")]
        if cells:
            rows, ap = _per_class_mean(cells)
            curves[method] = (np.array([r["train_image_count"] for r in rows]), ap)
    return _against_image_count(curves, "per-class bbox AP (%)",
                                "Per-class AP against training image count (mean over seeds)", path)


def classifier_norms(results: List[Dict], methods: Sequence[str], image_count: Sequence[int], path: str) -> str:
    curves = {}
    for method in methods:
        cells = [c for c in _ok(results, method) if c.get("classifier_norms")]
        if cells:
            norms = np.nanmean(np.array([c["classifier_norms"] for c in cells], float), axis=0)
            curves[method] = (np.asarray(image_count), norms / np.nanmean(norms))
    return _against_image_count(curves, "||w_c|| / mean over classes",
                                "Classifier weight norm against training image count", path)


def logit_grad_ratio(results: List[Dict], methods: Sequence[str], instance_count: Sequence[int], path: str) -> str:
    plt = _plt()
    fig, (ax_mag, ax_ratio) = plt.subplots(1, 2, figsize=(11, 4))
    order = np.argsort(-np.asarray(instance_count), kind="stable")
    for method in methods:
        cells = [c for c in _ok(results, method) if c.get("logit_grad_stats")]
        if not cells:
            continue
        stats = cells[0]["logit_grad_stats"]
        pos, neg = np.asarray(stats["pos"])[order], np.asarray(stats["neg"])[order]
        line, = ax_mag.plot(pos, linewidth=1, label=f"{method} positive")
        ax_mag.plot(neg, linewidth=1, linestyle="--", color=line.get_color(), label=f"{method} negative")
        with np.errstate(divide="ignore", invalid="ignore"):
            ax_ratio.plot(pos / neg, linewidth=1, color=line.get_color(), label=method)
    for ax in (ax_mag, ax_ratio):
        ax.set_yscale("log")
        ax.set_xlabel("class, by training instances (most first)")
    ax_mag.set_ylabel("accumulated |dL/dz_j|")
    ax_ratio.set_ylabel("positive / negative")
    ax_mag.legend(fontsize=7)
    ax_ratio.legend(fontsize=7)
    fig.suptitle("Accumulated gradient on each class's logit over training (EQL, Fig. 1)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def draw_all(rows: List[Dict], results: List[Dict], stats, out_dir: str) -> List[str]:
    """Every figure into ``out_dir``; the method sets are the papers' (those present are drawn)."""
    os.makedirs(out_dir, exist_ok=True)
    return [
        ap_by_group(rows, os.path.join(out_dir, "ap_by_group.png")),
        ap_vs_image_count(results, ("softmax_ce", "rfs", "eql", "seesaw", "cRT", "bags_stage2"),
                          os.path.join(out_dir, "ap_vs_image_count.png")),
        classifier_norms(results, ("softmax_ce", "cRT", "tau_norm", "LWS"), stats.image_count.tolist(),
                         os.path.join(out_dir, "classifier_norms.png")),
        logit_grad_ratio(results, ("softmax_ce", "sigmoid_ce", "eql", "gol"), stats.instance_count.tolist(),
                         os.path.join(out_dir, "logit_grad_ratio.png")),
    ]

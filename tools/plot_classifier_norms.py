#!/usr/bin/env python
"""Per-class classifier weight norm against training image count (the long-tail diagnostic).

    python tools/plot_classifier_norms.py --config-file configs/demo/mask_rcnn_R_18_FPN_synthetic_lt.yaml \\
        --weights output/demo/model_final.pth [--output-dir output/demo/classifier_norms]

Reads ``roi_heads.box_predictor.cls_score.weight`` from the checkpoint, takes the L2 norm of each
foreground class's row (rows 0..K-1: the layout of every loss except BAGS, whose rows are ordered
by group and are refused here), and plots it against the class's training image count from the
training set's metadata, coloured by frequency group. Writes ``classifier_norms.png`` and
``classifier_norms.csv``. A classifier trained on a long tail typically has larger norms for
frequent classes; τ-normalisation (tools/tau_norm.py) divides them out.
"""
import argparse
import csv
import os

import torch

import lt_det  # noqa: F401  (compat shims before detectron2)
import lt_det.data  # noqa: F401  (dataset registration)
from detectron2.config import get_cfg

from lt_det.config import add_lt_det_config
from lt_det.data import get_class_stats
from lt_det.evaluation.per_class import scatter_by_group

CLASSIFIER = "roi_heads.box_predictor.cls_score.weight"


def class_weight_norms(state_dict: dict, num_classes: int, key: str = CLASSIFIER) -> torch.Tensor:
    """(K,) L2 norms of the first K rows of the classifier weight (L, D)."""
    if key not in state_dict:
        raise KeyError(f"checkpoint has no '{key}'; classifier-like keys: "
                       f"{[k for k in state_dict if 'cls_score' in k]}")
    weight = state_dict[key]
    if weight.shape[0] < num_classes:
        raise ValueError(f"'{key}' has {weight.shape[0]} rows, fewer than the {num_classes} classes")
    return weight[:num_classes].float().norm(dim=1)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True, help="a checkpoint written by train_net.py")
    parser.add_argument("--output-dir", help="default: the checkpoint's folder")
    parser.add_argument("--key", default=CLASSIFIER, help="classifier weight key (a cascade stage's, ...)")
    args = parser.parse_args(argv)

    cfg = add_lt_det_config(get_cfg())
    cfg.merge_from_file(args.config_file)
    if cfg.MODEL.LT_LOSS.NAME == "bags":
        raise SystemExit("BAGS orders its classifier rows by group: per-class rows are not 0..K-1")
    stats = get_class_stats(cfg.DATASETS.TRAIN)
    checkpoint = torch.load(args.weights, map_location="cpu", weights_only=False)
    norms = class_weight_norms(checkpoint.get("model", checkpoint), stats.num_classes, args.key)

    out = args.output_dir or os.path.dirname(os.path.abspath(args.weights))
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "classifier_norms.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "train_image_count", "frequency", "weight_norm"])
        for k in range(stats.num_classes):
            writer.writerow([k, int(stats.image_count[k]), stats.frequency[k], float(norms[k])])
    import matplotlib

    matplotlib.use("Agg")
    path = os.path.join(out, "classifier_norms.png")
    scatter_by_group(stats.image_count.tolist(), norms.tolist(), stats.frequency.tolist(),
                     "classifier weight norm ||w_c||", "Classifier weight norm against training image count", path)
    print(f"wrote {path} and classifier_norms.csv")
    return path


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Per-class classifier weight norm against training image count (the long-tail diagnostic).

    python tools/plot_classifier_norms.py --config-file configs/demo/mask_rcnn_R_18_FPN_synthetic_lt.yaml \\
        --weights output/demo/model_final.pth [--output-dir output/demo/classifier_norms]

Reads ``roi_heads.box_predictor.cls_score.weight`` from the checkpoint, takes the L2 norm of each
foreground class's row (the rows the config's loss names, ``LTLoss.classifier_rows()``: rows 0..K-1
for every loss except BAGS, whose rows are ordered by group; times the class's LWS scale in an LWS
checkpoint), and plots it against the class's training image count from the
training set's metadata, coloured by frequency group. Writes ``classifier_norms.png`` and
``classifier_norms.csv``. A classifier trained on a long tail typically has larger norms for
frequent classes; τ-normalisation (tools/tau_norm.py) divides them out.
"""
import argparse
import csv
import os
import torch

from detectron2.config import get_cfg

from lt_det.builtin import setup_environment
from lt_det.config import add_lt_det_config
from lt_det.data import get_class_stats
from lt_det.evaluation.per_class import scatter_by_group
from lt_det.losses import build_loss
from lt_det.modeling.tau_norm import CLASSIFIER_WEIGHT, class_weight_norms

def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True, help="a checkpoint written by train_net.py")
    parser.add_argument("--output-dir", help="default: the checkpoint's folder")
    parser.add_argument("--key", default=CLASSIFIER_WEIGHT, help="classifier weight key (a cascade stage's, ...)")
    args = parser.parse_args(argv)
    setup_environment()

    cfg = add_lt_det_config(get_cfg())
    cfg.merge_from_file(args.config_file)
    stats = get_class_stats(cfg.DATASETS.TRAIN)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = stats.num_classes  # the checkpoint was trained on this data
    class_rows = build_loss(cfg, stats).classifier_rows()  # BAGS's are not the first K rows
    checkpoint = torch.load(args.weights, map_location="cpu", weights_only=False)
    norms = class_weight_norms(checkpoint.get("model", checkpoint), class_rows, args.key)

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

#!/usr/bin/env python
"""Evaluate an existing LVIS results json against an LVIS-format annotation json (no model).

    python tools/evaluate_lvis_results.py ANNOTATIONS.json RESULTS.json --output-dir DIR \
        [--backend hotcoco] [--tasks bbox segm] [--fixed-ap [--dets-per-class 10000]]

RESULTS.json is a list of ``{"image_id", "category_id", "score", "bbox"[, "segmentation"]}`` with
LVIS category ids (what detectron2 writes as ``lvis_instances_results.json``). Writes
``metrics.json``, the per-task results files, per-class CSV/JSON and plots into DIR (per-class
training image counts come from the annotation json's ``image_count``), and prints the table.
"""
import argparse
import json
import logging
import os
import sys

from lt_det.builtin import setup_environment
from lt_det.evaluation.backends import BACKENDS, DEFAULT_BACKEND
from lt_det.evaluation.lvis_eval import GroundTruthInfo, evaluate_lvis, format_metrics_table


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("annotations", help="LVIS-format annotation json")
    parser.add_argument("results", help="LVIS results json (list of detections)")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--backend", default=DEFAULT_BACKEND, choices=sorted(BACKENDS))
    parser.add_argument("--tasks", nargs="+", choices=["bbox", "segm"],
                        help="default: bbox when the results have boxes, segm when they have segmentations")
    parser.add_argument("--fixed-ap", action="store_true", help="also report Fixed AP (Dave et al.)")
    parser.add_argument("--dets-per-class", type=int, default=10000, help="Fixed AP's detections per class")
    parser.add_argument("--no-per-class", action="store_true", help="skip the per-class CSV/JSON/plots")
    args = parser.parse_args(argv)
    setup_environment()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    with open(args.results) as f:
        results = json.load(f)
    if not isinstance(results, list):
        raise ValueError(f"{args.results}: expected a list of detections, got {type(results).__name__}")
    # Default: each task whose field the detections carry (lt_det's own segm file has no "bbox").
    tasks = args.tasks or [t for t, key in (("bbox", "bbox"), ("segm", "segmentation")) if results and key in results[0]]
    if not tasks:
        tasks = ["bbox"]  # empty results: NaN metrics with a warning
    metrics = evaluate_lvis(
        GroundTruthInfo.load(args.annotations),
        lambda: iter(results),
        args.output_dir,
        tasks,
        args.backend,
        fixed_ap_dets_per_class=args.dets_per_class if args.fixed_ap else None,
        save_per_class_results=not args.no_per_class,
    )
    with open(os.path.join(args.output_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    print(format_metrics_table(metrics))
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])

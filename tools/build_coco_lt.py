#!/usr/bin/env python
"""Build COCO-LT (BAGS, CVPR 2020, supplementary 4.1) from COCO train2017, in LVIS format.

    python tools/build_coco_lt.py --coco-train datasets/coco/annotations/instances_train2017.json \
        [--coco-val datasets/coco/annotations/instances_val2017.json] \
        [--lvis-stats tests/data/lvis_v0.5_train_cat_info.json] [--seed 0] [--coco-format] \
        --output datasets/coco_lt

Writes ``OUTPUT/coco_lt_train.json`` (LVIS format: lt_det's loader and evaluator read it) and,
with --coco-val, ``OUTPUT/coco_lt_val.json`` (COCO val2017 in LVIS format, its categories carrying
COCO-LT's training statistics); with --coco-format also ``OUTPUT/coco_lt_train_coco.json``, the
subset in COCO format (ignored instances as ``iscrowd`` 1). ``lt_det.builtin`` registers
``coco_lt_train`` / ``coco_lt_val`` from ``$DETECTRON2_DATASETS/coco_lt`` with images in
``$DETECTRON2_DATASETS/coco/{train2017,val2017}``.

--lvis-stats: LVIS v0.5's training statistics, either the LVIS v0.5 train json (its
``categories``) or a list of category records with ``instance_count``; the default is the copy of
LVIS v0.5 train's categories kept in tests/data. The rule (rank alignment, greedy sampling,
ignored instances) is documented in ``lt_det.data.coco_lt.build_coco_lt``. Prints the result's
classes per frequency group and per instance bin.
"""
import argparse
import json
import os
import sys
import time
from typing import List, Optional, Sequence

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, REPO)
from lt_det.data.coco_lt import COCO_NUM_CATEGORIES, build_coco_lt, to_lvis_format  # noqa: E402
from lt_det.data.class_stats import FREQUENCY_GROUPS  # noqa: E402
from lt_det.evaluation.metrics import INSTANCE_BINS, instance_bin  # noqa: E402

DEFAULT_LVIS_STATS = os.path.join(REPO, "tests", "data", "lvis_v0.5_train_cat_info.json")


def load_lvis_stats(path: str) -> List[dict]:
    """The category records of an LVIS json (a dict with ``categories``) or of a cat-info list."""
    with open(path) as f:
        data = json.load(f)
    records = data.get("categories") if isinstance(data, dict) else data
    if not isinstance(records, list) or not records:
        raise ValueError(f"{path}: expected an LVIS json with 'categories' or a list of category records")
    return records


def _load(path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"COCO json not found: {path}")
    with open(path) as f:
        return json.load(f)


def _write(data: dict, path: str) -> None:
    with open(path, "w") as f:
        json.dump(data, f)
    print(f"wrote {path}")


def summary_lines(lvis_train: dict, coco_lt: dict) -> List[str]:
    """Images, instances (kept / target / ignored), classes per frequency group and instance bin."""
    cats = lvis_train["categories"]
    info = coco_lt["info"]["coco_lt"]
    bins = {name: 0 for name in INSTANCE_BINS}
    for c in cats:
        name = instance_bin(c["instance_count"])
        if name is not None:
            bins[name] += 1
    groups = {g: sum(c["frequency"] == g for c in cats) for g in FREQUENCY_GROUPS}
    return [
        f"COCO-LT train: {len(coco_lt['images'])} images, {len(cats)} classes, "
        f"{sum(c['instance_count'] for c in cats)} instances (targets sum to "
        f"{sum(c['target'] for c in info['categories'])}; {info['ignored_instances']} ignored)",
        "classes per instance bin: " + ", ".join(f"{k} [{lo}, {hi})={bins[k]}" for k, (lo, hi) in INSTANCE_BINS.items()),
        "classes per frequency group: " + ", ".join(f"{g}={n}" for g, n in groups.items()),
    ]


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coco-train", required=True, help="COCO instances_train2017.json")
    parser.add_argument("--coco-val", help="COCO instances_val2017.json, converted to coco_lt_val.json")
    parser.add_argument("--lvis-stats", default=DEFAULT_LVIS_STATS,
                        help="LVIS v0.5 train json or cat-info list (default: %(default)s)")
    parser.add_argument("--output", required=True, help="folder for the jsons")
    parser.add_argument("--seed", type=int, default=0, help="of the image order (default 0)")
    parser.add_argument("--num-categories", type=int, default=COCO_NUM_CATEGORIES,
                        help="categories the COCO json must have (default: COCO's %(default)s)")
    parser.add_argument("--name", default="coco_lt", help="the jsons are NAME_{train,val}.json")
    parser.add_argument("--coco-format", action="store_true", help="also write NAME_train_coco.json")
    args = parser.parse_args(argv)

    start = time.time()
    coco_lt = build_coco_lt(_load(args.coco_train), load_lvis_stats(args.lvis_stats), seed=args.seed,
                            num_categories=args.num_categories)
    lvis_train = to_lvis_format(coco_lt, "train2017")
    os.makedirs(args.output, exist_ok=True)
    _write(lvis_train, os.path.join(args.output, f"{args.name}_train.json"))
    if args.coco_format:
        _write(coco_lt, os.path.join(args.output, f"{args.name}_train_coco.json"))
    if args.coco_val:
        lvis_val = to_lvis_format(_load(args.coco_val), "val2017", train_categories=lvis_train["categories"])
        _write(lvis_val, os.path.join(args.output, f"{args.name}_val.json"))
    for line in summary_lines(lvis_train, coco_lt):
        print(line)
    print(f"done in {time.time() - start:.0f} s")
    return lvis_train


if __name__ == "__main__":
    main()

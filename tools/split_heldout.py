#!/usr/bin/env python
"""Carve a held-out split from an LVIS-format training json, for choosing calibrations.

    python tools/split_heldout.py --json datasets/lvis/lvis_v1_train.json --num-images 5000 \
        [--seed 0] [--min-train-images 1] [--output-dir datasets/lvis] [--name lvis_v1]

Writes ``OUTPUT_DIR/NAME_train_minus_heldout.json`` and ``OUTPUT_DIR/NAME_heldout.json``
(default: next to the input, NAME from its file name without ``_train``). For LVIS v1 and v0.5 in
``$DETECTRON2_DATASETS/lvis``, ``lt_det.builtin`` registers them as
``lvis_v1_{train_minus_heldout,heldout}`` (``lvis_v0.5_...``); other jsons register with
``lt_det.data.register_lvis_format``. Train stage 1 on ``..._train_minus_heldout`` and tune with
``--tune-dataset ..._heldout``: a model trained on all of train has seen the held-out images. The
rule (which images, which statistics) is in ``lt_det.data.heldout``. Prints what each split holds.
"""
import argparse
import json
import os
import sys
import time
from collections import Counter
from typing import Optional, Sequence

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lt_det.data.class_stats import FREQUENCY_GROUPS  # noqa: E402
from lt_det.data.heldout import HELDOUT_SPLITS, split_heldout  # noqa: E402


def default_name(json_path: str) -> str:
    """``lvis_v1_train.json`` -> ``lvis_v1``; any other name without its extension."""
    stem = os.path.splitext(os.path.basename(json_path))[0]
    return stem[: -len("_train")] if stem.endswith("_train") else stem


def summary_line(split: str, data: dict) -> str:
    """Images, annotations and the categories with annotations per frequency group."""
    frequency = {c["id"]: c["frequency"] for c in data["categories"]}
    present = Counter(frequency[c] for c in {a["category_id"] for a in data["annotations"]})
    return (f"{split}: {len(data['images'])} images, {len(data['annotations'])} annotations, categories with "
            "annotations: " + ", ".join(f"{g}={present[g]}/{sum(f == g for f in frequency.values())}"
                                        for g in FREQUENCY_GROUPS))


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, help="the LVIS-format training json")
    parser.add_argument("--num-images", type=int, required=True, help="images to hold out")
    parser.add_argument("--seed", type=int, default=0, help="of the image order (default 0)")
    parser.add_argument("--min-train-images", type=int, default=1,
                        help="the fewest training images a category keeps (default 1)")
    parser.add_argument("--output-dir", default="", help="folder for the two jsons (default: the input's)")
    parser.add_argument("--name", default="", help="the jsons are NAME_{train_minus_heldout,heldout}.json")
    args = parser.parse_args(argv)

    if not os.path.isfile(args.json):
        raise FileNotFoundError(f"Training json not found: {args.json}")
    start = time.time()
    with open(args.json) as f:
        data = json.load(f)
    parts = dict(zip(HELDOUT_SPLITS, split_heldout(data, args.num_images, args.seed, args.min_train_images,
                                                   source=args.json)))
    out_dir = args.output_dir or os.path.dirname(os.path.abspath(args.json))
    name = args.name or default_name(args.json)
    os.makedirs(out_dir, exist_ok=True)
    for split, part in parts.items():
        path = os.path.join(out_dir, f"{name}_{split}.json")
        with open(path, "w") as f:
            json.dump(part, f)
        print(f"wrote {path}")
        print(summary_line(split, part))
    print(f"done in {time.time() - start:.0f} s")
    return parts


if __name__ == "__main__":
    main()

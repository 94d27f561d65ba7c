#!/usr/bin/env python
"""Per-class fractal dimension of box locations (FRACAL, Alexandridis et al., CVPR 2025) from a
training json, written for the calibration to load (lt_det.calibration.fractal_dimension).

    python tools/fractal_dimension.py --json datasets/lvis/lvis_v1_train.json \
        --output datasets/lvis/lvis_v1_train_fractal_dimension.json [--max-grid 64]

Prints the number of classes, how many got the floor value 1 (fewer than 4 boxes, or a fitted
slope below 1), the min / median / max dimension and the time taken.
"""
import argparse
import time

import numpy as np

from lt_det.calibration.fractal_dimension import (
    fractal_dimensions,
    normalized_box_centres,
    save_fractal_dimensions,
)
from lt_det.data.datasets import load_json


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", required=True, help="LVIS/COCO-format training json")
    p.add_argument("--output", required=True, help="the fractal dimension file to write (.json)")
    p.add_argument("--max-grid", type=int, default=64, help="largest grid size d (default 64, as in the paper)")
    return p


def main(argv=None) -> np.ndarray:
    args = parser().parse_args(argv)
    start = time.perf_counter()
    dataset = load_json(args.json)
    class_index, centres = normalized_box_centres(dataset)
    dims = fractal_dimensions(class_index, centres, len(dataset["categories"]), args.max_grid)
    # Sorted ids: the order of normalized_box_centres's contiguous class index.
    category_ids = sorted(c["id"] for c in dataset["categories"])
    save_fractal_dimensions(args.output, dims, category_ids, args.json, args.max_grid)
    elapsed = time.perf_counter() - start
    print(f"{len(dims)} classes, {len(class_index)} boxes, grid sizes 1..{args.max_grid}")
    print(f"{int((dims == 1).sum())} classes at the floor value 1 (fewer than 4 boxes, or a slope below 1)")
    if len(dims):
        print(f"dimension min / median / max: {dims.min():.4f} / {np.median(dims):.4f} / {dims.max():.4f}")
    print(f"wrote {args.output} in {elapsed:.1f} s")
    return dims


if __name__ == "__main__":
    main()

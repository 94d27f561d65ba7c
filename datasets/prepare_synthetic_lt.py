#!/usr/bin/env python
"""Generate the embedded synthetic long-tailed LVIS-format dataset (see lt_det/data/synthetic.py).

    python datasets/prepare_synthetic_lt.py [--out datasets/synthetic_lt] [--name synthetic_lt] [--num-classes 40] ...

Deterministic: the same arguments give identical files. Skips generation when the output folder
already holds jsons made with the same arguments (use --force to regenerate).
"""
import argparse
import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lt_det.data.synthetic import SyntheticLTConfig, generate, is_up_to_date  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "synthetic_lt"))
    parser.add_argument("--name", default="synthetic_lt", help="the jsons are NAME_{train,val,heldout}.json")
    parser.add_argument("--force", action="store_true", help="regenerate even if up to date")
    for field in dataclasses.fields(SyntheticLTConfig):
        parser.add_argument("--" + field.name.replace("_", "-"), type=field.type, default=field.default)
    args = parser.parse_args()
    cfg = SyntheticLTConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SyntheticLTConfig)})

    if not args.force and is_up_to_date(args.out, cfg, args.name):
        print(f"{args.out} is up to date")
        return
    start = time.perf_counter()
    paths = generate(args.out, cfg, args.name)
    with open(paths["train"]) as f:
        train = json.load(f)
    groups = {g: sum(c["frequency"] == g for c in train["categories"]) for g in "rcf"}
    print(f"wrote {', '.join(paths.values())} in {time.perf_counter() - start:.1f}s: "
          f"{len(train['images'])} train images, {len(train['annotations'])} instances, "
          f"{len(train['categories'])} classes (rare {groups['r']}, common {groups['c']}, frequent {groups['f']})")


if __name__ == "__main__":
    main()

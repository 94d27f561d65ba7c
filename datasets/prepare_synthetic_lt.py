#!/usr/bin/env python
"""Generate the embedded synthetic long-tailed LVIS-format dataset (see lt_det/data/synthetic.py).

    python datasets/prepare_synthetic_lt.py [--out datasets/synthetic_lt] [--name synthetic_lt] [--num-classes 40] ...

Deterministic: the same arguments give identical files. Skips generation when the output folder
already holds jsons made with the same arguments (use --force to regenerate).

Prints the data's fingerprint (``lt_det.data.synthetic.fingerprint``) and, for the default set,
compares it with the one the README's demo numbers were measured on (``synthetic_lt.sha256`` next
to this script): a different fingerprint means different data, and other numbers.
"""
import argparse
import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lt_det.data.synthetic import SyntheticLTConfig, fingerprint, generate, is_up_to_date  # noqa: E402

# The default set's fingerprint, as generated where the README's demo numbers were measured.
EXPECTED_FINGERPRINT_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "synthetic_lt.sha256")


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
    else:
        write(args.out, cfg, args.name)
    check_fingerprint(args.out, cfg, args.name)


def check_fingerprint(out_dir: str, cfg: SyntheticLTConfig, name: str) -> None:
    digest = fingerprint(out_dir, cfg, name)
    print(f"fingerprint of {out_dir}: {digest}")
    if (cfg, name) != (SyntheticLTConfig(), "synthetic_lt"):
        return
    with open(EXPECTED_FINGERPRINT_FILE) as f:
        expected = f.read().split()[0]
    if digest == expected:
        print("  the same data as the README's demo numbers were measured on")
    else:
        print(f"  WARNING: differs from the data the README's demo numbers were measured on ({expected}): expect "
              "other numbers. Different package versions (OpenCV, numpy) draw other images; "
              "`make setup` installs the tested ones (constraints.txt).")


def write(out: str, cfg: SyntheticLTConfig, name: str) -> None:
    start = time.perf_counter()
    paths = generate(out, cfg, name)
    with open(paths["train"]) as f:
        train = json.load(f)
    groups = {g: sum(c["frequency"] == g for c in train["categories"]) for g in "rcf"}
    print(f"wrote {', '.join(paths.values())} in {time.perf_counter() - start:.1f}s: "
          f"{len(train['images'])} train images, {len(train['annotations'])} instances, "
          f"{len(train['categories'])} classes (rare {groups['r']}, common {groups['c']}, frequent {groups['f']})")


if __name__ == "__main__":
    main()

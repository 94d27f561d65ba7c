#!/usr/bin/env python
"""The long-tail benchmark: every method of configs/benchmark/methods.yaml trained and evaluated
with one recipe (configs/benchmark/Base-benchmark.yaml) on the generated long-tailed set.

    python tools/benchmark.py                      # the full table: every method, 3 seeds
    python tools/benchmark.py --profile quick      # a few methods, one seed, short schedule
    python tools/benchmark.py --methods eql cRT    # these methods (and the stage 1 they start from)
    python tools/benchmark.py --report             # the table from finished cells only, no training
    python tools/benchmark.py --import-cells docs/benchmark/cells.json   # continue a committed run

Finished cells are cached under ``--cache`` by a key of their full config: a killed run continues
where it stopped and a re-run trains only what changed. Writes ``table.md``, ``table.json`` and the
figures to ``--output``. See docs/benchmark.md.
"""
import argparse
import dataclasses
import json
import logging
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lt_det.benchmark import plots, table  # noqa: E402
from lt_det.benchmark.methods import DEFAULT_METHODS_FILE, load_methods, select  # noqa: E402
from lt_det.benchmark.runner import BenchmarkRunner, Profile, import_results  # noqa: E402
from lt_det.builtin import setup_environment  # noqa: E402

PROFILES = {
    # 360 iterations at batch 4 = 1.03 epochs of the 1,397 training images; the pretraining 800
    # iterations at batch 8 = 5.5 epochs of its 1,155 images
    "full": Profile("full", seeds=(0, 1, 2), iters=360, pretrain_iters=800),
    "quick": Profile("quick", seeds=(0,), iters=100, pretrain_iters=150,
                     methods=("softmax_ce", "rfs", "eql", "cRT", "tau_norm")),
}


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except OSError:
        return ""


def main(argv=None, profiles=PROFILES) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="full", choices=sorted(profiles))
    parser.add_argument("--methods", nargs="+", help="default: the profile's (full: every method)")
    parser.add_argument("--seeds", nargs="+", type=int, help="default: the profile's")
    parser.add_argument("--methods-file", default=DEFAULT_METHODS_FILE)
    parser.add_argument("--cache", default="output/benchmark/cells", help="the cells' folder (shared by profiles)")
    parser.add_argument("--output", help="default: output/benchmark/PROFILE")
    parser.add_argument("--report", action="store_true", help="no training: tabulate the finished cells")
    parser.add_argument("--import-cells", metavar="CELLS_JSON",
                        help="first put the finished cells of an earlier run's cells.json into the cache")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(name)s %(levelname)s: %(message)s")
    setup_environment()

    methods = load_methods(args.methods_file)
    profile = profiles[args.profile]
    if args.methods:
        select(methods, args.methods)  # fails on an unknown name with the valid ones
        profile = dataclasses.replace(profile, methods=tuple(args.methods))
    if args.seeds:
        profile = dataclasses.replace(profile, seeds=tuple(args.seeds))
    out = args.output or os.path.join("output", "benchmark", profile.name)
    data_root = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))

    start = time.perf_counter()
    if args.import_cells:
        with open(args.import_cells) as f:
            print(f"imported {import_results(os.path.abspath(args.cache), json.load(f))} cells from {args.import_cells}")
    runner = BenchmarkRunner(profile, methods, os.path.abspath(args.cache), os.path.abspath(data_root),
                             cached_only=args.report)
    results = runner.run()
    rows = table.summarize(methods, results)
    meta = {"command": " ".join(["python tools/benchmark.py"] + (argv if argv is not None else sys.argv[1:])),
            "profile": dataclasses.asdict(profile), "commit": _commit(), "thresholds": runner.thresholds,
            "wall_minutes": (time.perf_counter() - start) / 60,
            "cells": {s: sum(r["status"] == s for r in results) for s in ("ok", "diverged", "failed", "skipped", "pending")}}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(table.to_markdown(rows))
    with open(os.path.join(out, "table.json"), "w") as f:
        f.write(table.to_json(rows, meta))
    with open(os.path.join(out, "cells.json"), "w") as f:
        json.dump(results, f, indent=1, allow_nan=True)
    figures = plots.draw_all(rows, results, runner.stats, out)
    print(table.to_markdown(rows))
    print(f"cells: {meta['cells']}; {meta['wall_minutes']:.1f} min; wrote {out}/table.md, table.json, "
          + ", ".join(os.path.basename(p) for p in figures))
    return {"rows": rows, "results": results, "meta": meta, "output": out}


if __name__ == "__main__":
    main()

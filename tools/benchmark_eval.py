#!/usr/bin/env python
"""Speed, peak memory and agreement of the LVIS evaluation backends on one synthetic split.

    python tools/benchmark_eval.py [--num-images 5000] [--num-classes 1203] [--dets-per-image 300]

Generates an LVIS-like split (tests/evaluation/synthetic_lvis.py: long-tailed classes with r/c/f groups,
negative and not-exhaustive classes, polygon masks) and detections, writes them as 8 per-process
shards as the evaluator does, and measures, each step in a fresh subprocess (peak memory is that
process's maximum resident set size):

* merge: streaming the shards into the per-task results files (what the main process does);
* every backend on the same results files, for bbox and segm.

Linux only (peak memory is read from /proc/self/status).

Prints a table: time, peak memory, speed-up over lvis-api, and the largest absolute difference
from lvis-api over the nine metrics (AP..APf, as fractions). Not a test: it takes minutes (lvis-api
dominates).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from lt_det.builtin import setup_environment
from lt_det.evaluation.backends import BACKENDS, get_backend
from lt_det.evaluation.lvis_eval import LVIS_MAX_DETS_PER_IMAGE, GroundTruthInfo
from lt_det.evaluation.metrics import METRICS, summarize
from lt_det.evaluation.results_io import ShardWriter, read_shards, write_task_files

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the test fixtures' generator
from tests.evaluation.synthetic_lvis import make_detections, make_lvis_split  # noqa: E402

NUM_SHARDS = 8


def _peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM). Not getrusage's ru_maxrss: Linux carries that
    across fork + exec, so a child would report its parent's peak."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024  # kB


def _worker(args) -> None:
    """Runs one step in this (fresh) process and prints {"seconds", "cpu_seconds", "peak_mib",
    "base_mib"} as JSON (base: the peak after imports, before the step; mostly torch and
    detectron2, which lt_det loads). CPU time (all threads) is less sensitive than wall time to
    other load on the machine."""
    base_mib = _peak_rss_mib()
    start, start_cpu = time.perf_counter(), time.process_time()
    if args.step == "merge":
        gt = GroundTruthInfo.load(args.gt)
        shards = [os.path.join(args.work_dir, f"rank_{r}.jsonl") for r in range(NUM_SHARDS)]
        write_task_files(lambda: read_shards(shards), args.work_dir, gt.image_sizes, [c["id"] for c in gt.categories])
    else:
        backend, task = args.step.split(":")
        results = os.path.join(args.work_dir, f"lvis_results_{task}.json")
        precision = get_backend(backend)(args.gt, results, task, LVIS_MAX_DETS_PER_IMAGE)
        np.save(os.path.join(args.work_dir, f"precision_{backend}_{task}.npy"), precision)
    print(json.dumps({"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - start_cpu,
                      "peak_mib": _peak_rss_mib(), "base_mib": base_mib}))


def _write_shards(gt: dict, args, work_dir: str) -> int:
    """Detections for consecutive blocks of images as NUM_SHARDS process shards, one block in
    memory at a time; returns the number of detections."""
    per_shard = -(-len(gt["images"]) // NUM_SHARDS)
    num_dets = 0
    for r in range(NUM_SHARDS):
        images = gt["images"][r * per_shard:(r + 1) * per_shard]
        ids = {img["id"] for img in images}
        block = {"images": images, "categories": gt["categories"],
                 "annotations": [a for a in gt["annotations"] if a["image_id"] in ids]}
        dets = make_detections(block, args.dets_per_image, seed=args.seed + 1 + r, with_masks="segm" in args.tasks)
        by_image = {}
        for d in dets:
            by_image.setdefault(d["image_id"], []).append(d)
        writer = ShardWriter(os.path.join(work_dir, f"rank_{r}.jsonl"))
        for img in images:
            writer.write(by_image.get(img["id"], []))
        writer.close()
        num_dets += len(dets)
    return num_dets


def _run_step(step: str, gt_json: str, work_dir: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", step, "--gt", gt_json, "--work-dir", work_dir],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-images", type=int, default=5000)
    parser.add_argument("--num-classes", type=int, default=1203)
    parser.add_argument("--dets-per-image", type=int, default=300)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=list(BACKENDS))
    parser.add_argument("--tasks", nargs="+", default=["bbox", "segm"], choices=["bbox", "segm"])
    parser.add_argument("--work-dir", help="keep the generated files here (default: a temporary directory)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", dest="step", help=argparse.SUPPRESS)
    parser.add_argument("--gt", help=argparse.SUPPRESS)
    args = parser.parse_args()
    setup_environment()  # numpy's aliases for lvis-api
    if args.step:
        return _worker(args)

    work_dir = args.work_dir or tempfile.mkdtemp(prefix="lt_det_bench_")
    os.makedirs(work_dir, exist_ok=True)
    gt_json = os.path.join(work_dir, "gt.json")
    t0 = time.perf_counter()
    gt = make_lvis_split(args.num_images, args.num_classes, seed=args.seed)
    with open(gt_json, "w") as f:
        json.dump(gt, f)
    num_dets = _write_shards(gt, args, work_dir)
    frequency = [c["frequency"] for c in sorted(gt["categories"], key=lambda c: c["id"])]
    print(f"{args.num_images} images, {args.num_classes} classes, {num_dets} detections "
          f"({args.dets_per_image} per image), generated in {time.perf_counter() - t0:.0f} s; files in {work_dir}",
          flush=True)
    del gt

    merge = _run_step("merge", gt_json, work_dir)
    print(f"merge of {NUM_SHARDS} shards into per-task files: {merge['seconds']:.1f} s, "
          f"peak {merge['peak_mib']:.0f} MiB ({merge['base_mib']:.0f} MiB after imports)", flush=True)

    rows = []
    backends = ["lvis"] + [b for b in args.backends if b != "lvis"] if "lvis" in args.backends else args.backends
    for task in args.tasks:
        reference = None
        for backend in backends:
            m = _run_step(f"{backend}:{task}", gt_json, work_dir)
            metrics = summarize(np.load(os.path.join(work_dir, f"precision_{backend}_{task}.npy")), frequency)
            if backend == "lvis":
                reference = (m["seconds"], m["cpu_seconds"], metrics)
            diff = speedup = cpu_speedup = float("nan")
            if reference is not None:
                speedup, cpu_speedup = reference[0] / m["seconds"], reference[1] / m["cpu_seconds"]
                diff = max(abs(metrics[k] - reference[2][k]) for k in METRICS)
            rows.append((task, backend, m["seconds"], m["cpu_seconds"], m["peak_mib"], m["peak_mib"] - m["base_mib"],
                         speedup, cpu_speedup, diff, metrics["AP"]))
            print(f"{task} {backend}: {m['seconds']:.1f} s, peak {m['peak_mib']:.0f} MiB, AP {metrics['AP']:.4f}", flush=True)

    print("\n| task | backend | wall (s) | CPU (s) | peak RSS (MiB) | of which evaluation (MiB) "
          "| speed-up vs lvis-api, wall | CPU | max metric diff vs lvis-api | AP |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for task, backend, sec, cpu, mib, own_mib, speedup, cpu_speedup, diff, ap in rows:
        vs_lvis = "| n/a | n/a | n/a" if reference is None else f"| {speedup:.1f}x | {cpu_speedup:.1f}x | {diff:.1e}"
        print(f"| {task} | {backend} | {sec:.1f} | {cpu:.1f} | {mib:.0f} | {own_mib:.0f} {vs_lvis} | {ap:.4f} |")


if __name__ == "__main__":
    main()

"""Speed of every registered box-classification loss at LVIS scale, relative to softmax CE.

Times forward + backward of each loss on (R, L) logits (R = 8192 RoIs, K = 1203 classes, a
25% foreground share as the RoI sampler gives), taking the median over repeated rounds. Each
round times every loss once, so load changes on a shared machine hit all losses alike; the ratio
to softmax CE (detectron2's F.cross_entropy) is from the same rounds. Wall time is the target's
measure; the process's CPU time (all threads) is printed next to it, since on a shared machine
waiting for a core inflates wall time. Runs on CPU, and on CUDA when present. The Gumbel
activation of EQL / DropLoss / Federated (GOL = DropLoss + Gumbel) is timed as extra rows.
The fused kernels run compiled (torch.compile) unless --no-compile; the first call of each loss
(round 0, not in the median) includes its compilation and is printed as "1st s".

Class statistics are LVIS v1's, read from an LVIS-format categories file
(default tests/data/lvis_v1_train_cat_info.json).

    python tools/benchmark_losses.py [--repeats 7] [--threads 2] [--devices cpu cuda] [--no-compile]
"""
import argparse
import json
import os
import statistics
import time

import torch

import lt_det  # noqa: F401  (compat shims before detectron2.layers)
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog

from lt_det.losses import add_loss_config, build_loss, list_losses
from lt_det.losses import kernels

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = {"bags": 2.0, "seesaw": 2.0}  # the targets, as a ratio to softmax CE
DEFAULT_TARGET = 1.5
BENCH_DATASET = "lt_det_benchmark_stats"


def register_stats(cat_info: str, num_images: int) -> int:
    with open(cat_info) as f:
        categories = sorted(json.load(f), key=lambda c: c["id"])
    MetadataCatalog.get(BENCH_DATASET).set(class_statistics=categories, num_annotated_images=num_images)
    return len(categories)


def build(name: str, num_classes: int, *opts):
    cfg = get_cfg()
    add_loss_config(cfg)
    cfg.DATASETS.TRAIN = (BENCH_DATASET,)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
    cfg.MODEL.LT_LOSS.NAME = name
    cfg.MODEL.LT_LOSS.COMPILE = kernels.compile_enabled()
    cfg.merge_from_list(list(opts))
    return build_loss(cfg)


def make_variants(num_classes: int):
    """(label, loss) for every registered loss, plus the Gumbel activation where it is an option."""
    variants = [(name, build(name, num_classes)) for name in list_losses()]
    for name in ("eql", "droploss", "federated"):
        variants.append((f"{name}+gumbel", build(name, num_classes, "MODEL.LT_LOSS.ACTIVATION", "gumbel")))
    return variants


def time_once(loss, logits, gt, device):
    """(wall seconds, CPU seconds of this process) of one forward + backward."""
    x = logits.detach().requires_grad_()
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    loss(x, gt).backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def benchmark(device: torch.device, num_rois: int, num_classes: int, repeats: int):
    gen = torch.Generator().manual_seed(0)
    num_fg = num_rois // 4
    fg_labels = torch.randint(0, num_classes, (num_fg,), generator=gen)
    gt = torch.cat([fg_labels, torch.full((num_rois - num_fg,), num_classes)])
    gt = gt[torch.randperm(num_rois, generator=gen)].to(device)
    variants = [(label, loss.to(device)) for label, loss in make_variants(num_classes)]
    inputs = {}
    for label, loss in variants:
        n = loss.num_logits(num_classes)
        if n not in inputs:
            inputs[n] = (torch.randn(num_rois, n, generator=gen) * 2).to(device)
    wall = {label: [] for label, _ in variants}
    cpu = {label: [] for label, _ in variants}
    first = {}
    for round_ in range(repeats + 1):  # round 0 warms up (and compiles)
        for label, loss in variants:
            w, c = time_once(loss, inputs[loss.num_logits(num_classes)], gt, device)
            if round_:
                wall[label].append(w)
                cpu[label].append(c)
            else:
                first[label] = w
    base_wall, base_cpu = statistics.median(wall["softmax_ce"]), statistics.median(cpu["softmax_ce"])
    print(f"\n{device.type}: R={num_rois}, K={num_classes}, median of {repeats} rounds, "
          f"{torch.get_num_threads()} threads (CPU time: this process's, all threads), "
          f"fused kernels {'compiled' if kernels.compile_enabled() else 'eager'}")
    print(f"{'loss':<20}{'wall ms':>9}{'x CE':>7}{'cpu ms':>9}{'x CE':>7}{'1st s':>7}{'target':>8}")
    for label, _ in variants:
        w, c = statistics.median(wall[label]), statistics.median(cpu[label])
        target = TARGET.get(label, DEFAULT_TARGET)
        flag = "" if w / base_wall <= target else "  over target (wall)"
        print(f"{label:<20}{1e3 * w:>9.1f}{w / base_wall:>7.2f}{1e3 * c:>9.1f}{c / base_cpu:>7.2f}"
              f"{first[label]:>7.1f}{target:>8.1f}{flag}")
    for name, error in kernels.compile_failures().items():
        print(f"{name} ran eagerly: its compilation failed ({error!r})")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rois", type=int, default=8192, help="R, RoIs per step")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (median is reported)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"], help="cuda is skipped when absent")
    parser.add_argument("--cat-info", default=os.path.join(REPO, "tests/data/lvis_v1_train_cat_info.json"),
                        help="LVIS-format categories with image_count / instance_count / frequency")
    parser.add_argument("--num-images", type=int, default=99388, help="M (LVIS v1 train: 99,388)")
    parser.add_argument("--no-compile", action="store_true", help="run the fused kernels eagerly")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    kernels.set_compile(not args.no_compile)
    num_classes = register_stats(args.cat_info, args.num_images)
    for name in args.devices:
        if name == "cuda" and not torch.cuda.is_available():
            print("\ncuda: not available, skipped")
            continue
        benchmark(torch.device(name), args.rois, num_classes, args.repeats)


if __name__ == "__main__":
    main()

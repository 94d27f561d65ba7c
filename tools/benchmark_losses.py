"""Speed of every registered box-classification loss at LVIS scale, relative to softmax CE.

Times forward + backward of each loss on (R, L) logits (R = 8192 RoIs, K = 1203 classes, a
25% foreground share as the RoI sampler gives), taking the median over repeated rounds. Each
round times every loss once, so load changes on a shared machine hit all losses alike; the ratio
to softmax CE (detectron2's F.cross_entropy) is from the same rounds. Wall time is the target's
measure; the process's CPU time (all threads) is printed next to it, since on a shared machine
waiting for a core inflates wall time. Runs on CPU, and on CUDA when present. The Gumbel
activation of EQL / DropLoss / Federated / EQLv2 / ACSL (GOL = DropLoss + Gumbel) is timed as
extra rows.
Each loss is timed twice: its reference implementation (the formula in plain PyTorch, autograd)
and its fused path (the compiled kernels of lt_det.losses.fused; "-" for a loss without one). The
first fused call of each loss (round 0, not in the median) includes its compilation and is printed
as "1st s". The target applies to the fused path.

Class statistics are LVIS v1's, read from an LVIS-format categories file
(default tests/data/lvis_v1_train_cat_info.json).

    python tools/benchmark_losses.py [--repeats 7] [--threads 2] [--devices cpu cuda] [--losses eqlv2 ecm]
    python tools/benchmark_losses.py --eqlv2-allreduce   # EQLv2's statistics all-reduce, 2 gloo processes

LOCE is timed without proposals: each foreground RoI counts as its own object in its statistic.
"""
import argparse
import json
import os
import statistics
import time

import torch

from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog

from lt_det.losses import add_loss_config, build_loss, fused, list_losses

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = {"bags": 2.0, "seesaw": 2.0}  # lt_det's speed targets, as a ratio to softmax CE
DEFAULT_TARGET = 1.5
BENCH_DATASET = "lt_det_benchmark_stats"


def register_stats(cat_info: str, num_images: int) -> int:
    with open(cat_info) as f:
        categories = sorted(json.load(f), key=lambda c: c["id"])
    MetadataCatalog.get(BENCH_DATASET).set(class_statistics=categories, num_annotated_images=num_images)
    return len(categories)


def build(name: str, num_classes: int, implementation: str, *opts):
    cfg = get_cfg()
    add_loss_config(cfg)
    cfg.DATASETS.TRAIN = (BENCH_DATASET,)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
    cfg.MODEL.LT_LOSS.NAME = name
    cfg.MODEL.LT_LOSS.IMPLEMENTATION = implementation
    cfg.merge_from_list(list(opts))
    return build_loss(cfg)


GUMBEL_OPTION = ("eql", "droploss", "federated", "eqlv2", "acsl")  # losses with MODEL.LT_LOSS.ACTIVATION


def make_variants(num_classes: int, names=None):
    """(label, implementation, loss) for every registered loss (or those in ``names``, softmax CE
    always: the baseline) and both implementations (the fused one where the loss has it), plus the
    Gumbel activation where it is an option."""
    names = list_losses() if not names else sorted(set(names) | {"softmax_ce"})
    unknown = sorted(set(names) - set(list_losses()))
    if unknown:
        raise SystemExit(f"unknown losses {unknown}; registered: {', '.join(list_losses())}")
    configs = [(name, ()) for name in names]
    configs += [(f"{name}+gumbel", (name, "MODEL.LT_LOSS.ACTIVATION", "gumbel")) for name in GUMBEL_OPTION
                if name in names]
    variants = []
    for label, args in configs:
        name, *opts = args or (label,)
        for implementation in ("reference", "fused"):
            loss = build(name, num_classes, implementation, *opts)
            if implementation == "reference" or loss.has_fused_path():
                variants.append((label, implementation, loss))
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


def benchmark(device: torch.device, num_rois: int, num_classes: int, repeats: int, names=None):
    gen = torch.Generator().manual_seed(0)
    num_fg = num_rois // 4
    fg_labels = torch.randint(0, num_classes, (num_fg,), generator=gen)
    gt = torch.cat([fg_labels, torch.full((num_rois - num_fg,), num_classes)])
    gt = gt[torch.randperm(num_rois, generator=gen)].to(device)
    variants = [(label, impl, loss.to(device)) for label, impl, loss in make_variants(num_classes, names)]
    inputs = {}
    for _, _, loss in variants:
        n = loss.num_logits(num_classes)
        if n not in inputs:
            inputs[n] = (torch.randn(num_rois, n, generator=gen) * 2).to(device)
    wall = {(label, impl): [] for label, impl, _ in variants}
    cpu = {(label, impl): [] for label, impl, _ in variants}
    first = {}
    for round_ in range(repeats + 1):  # round 0 warms up (and compiles)
        for label, impl, loss in variants:
            w, c = time_once(loss, inputs[loss.num_logits(num_classes)], gt, device)
            if round_:
                wall[label, impl].append(w)
                cpu[label, impl].append(c)
            else:
                first[label, impl] = w
    med = {key: (statistics.median(wall[key]), statistics.median(cpu[key])) for key in wall}
    base_wall, base_cpu = med["softmax_ce", "reference"]
    print(f"\n{device.type}: R={num_rois}, K={num_classes}, median of {repeats} rounds, "
          f"{torch.get_num_threads()} threads (CPU time: this process's, all threads); x CE: ratio to "
          "softmax CE (detectron2's F.cross_entropy) in the same rounds")
    print(f"{'loss':<20}{'ref ms':>9}{'x CE':>7}{'fused ms':>10}{'x CE':>7}{'cpu x CE':>9}{'1st s':>7}{'target':>8}")
    for label in dict.fromkeys(label for label, _, _ in variants):
        ref_wall, _ = med[label, "reference"]
        line = f"{label:<20}{1e3 * ref_wall:>9.1f}{ref_wall / base_wall:>7.2f}"
        target = TARGET.get(label, DEFAULT_TARGET)
        if (label, "fused") in med:
            w, c = med[label, "fused"]
            flag = "" if w / base_wall <= target else "  over target (wall)"
            line += f"{1e3 * w:>10.1f}{w / base_wall:>7.2f}{c / base_cpu:>9.2f}{first[label, 'fused']:>7.1f}{target:>8.1f}{flag}"
        else:
            line += f"{'-':>10}{'-':>7}{'-':>9}{'-':>7}{'-':>8}"
        print(line)
    for name, error in fused.compile_failures().items():
        print(f"{name} ran uncompiled: its compilation failed ({error!r})")


def _allreduce_worker(rank, world_size, init_file, out_file, cat_info, num_images, num_rois, repeats):
    """One of the processes of :func:`benchmark_eqlv2_allreduce`: times EQLv2's fused step with
    per-process and with all-reduced statistics, and the all-reduce alone, interleaved."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    num_classes = register_stats(cat_info, num_images)
    losses = {sync: build("eqlv2", num_classes, "fused", "MODEL.LT_LOSS.EQLV2.SYNC_STATS", sync)
              for sync in (False, True)}
    gen = torch.Generator().manual_seed(rank)
    logits = torch.randn(num_rois, num_classes + 1, generator=gen) * 2
    gt = torch.randint(0, num_classes + 1, (num_rois,), generator=gen)
    sums = torch.zeros(2, num_classes)
    times = {"per-process": [], "all-reduced": [], "all_reduce alone": []}
    for round_ in range(repeats + 1):
        for sync, label in ((False, "per-process"), (True, "all-reduced")):
            dist.barrier()
            wall, _ = time_once(losses[sync], logits, gt, torch.device("cpu"))
            if round_:
                times[label].append(wall)
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(sums)
        if round_:
            times["all_reduce alone"].append(time.perf_counter() - start)
    if rank == 0:
        with open(out_file, "w") as f:
            json.dump({k: statistics.median(v) for k, v in times.items()}, f)
    dist.destroy_process_group()


def benchmark_eqlv2_allreduce(cat_info: str, num_images: int, num_rois: int, repeats: int) -> None:
    """EQLv2's per-step all-reduce of its 2 x K gradient sums, in 2 gloo processes on this machine
    (one thread each), against the same step with per-process statistics."""
    import tempfile

    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "times.json")
        mp.spawn(_allreduce_worker, args=(2, os.path.join(tmp, "init"), out, cat_info, num_images, num_rois, repeats),
                 nprocs=2, join=True)
        with open(out) as f:
            med = json.load(f)
    print(f"\neqlv2 in 2 gloo processes (1 thread each), R={num_rois} per process, median of {repeats} rounds:")
    for label, seconds in med.items():
        print(f"  {label:<18}{1e3 * seconds:>9.2f} ms")
    print(f"  all-reduced / per-process step: {med['all-reduced'] / med['per-process']:.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rois", type=int, default=8192, help="R, RoIs per step")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (median is reported)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"], help="cuda is skipped when absent")
    parser.add_argument("--cat-info", default=os.path.join(REPO, "tests/data/lvis_v1_train_cat_info.json"),
                        help="LVIS-format categories with image_count / instance_count / frequency")
    parser.add_argument("--num-images", type=int, default=99388, help="M (LVIS v1 train: 99,388)")
    parser.add_argument("--losses", nargs="+", help="time only these losses (and softmax CE); default: all")
    parser.add_argument("--eqlv2-allreduce", action="store_true",
                        help="instead: time EQLv2's all-reduce of its statistics in 2 gloo processes")
    args = parser.parse_args()
    if args.eqlv2_allreduce:
        benchmark_eqlv2_allreduce(args.cat_info, args.num_images, args.rois, args.repeats)
        return
    torch.set_num_threads(args.threads)
    num_classes = register_stats(args.cat_info, args.num_images)
    for name in args.devices:
        if name == "cuda" and not torch.cuda.is_available():
            print("\ncuda: not available, skipped")
            continue
        benchmark(torch.device(name), args.rois, num_classes, args.repeats, args.losses)


if __name__ == "__main__":
    main()

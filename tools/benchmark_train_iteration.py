"""One full training iteration of the demo model: lt_det's predictor against detectron2's stock one.

Both models are the demo's Mask R-CNN (configs/demo/...yaml) with identical weights; one has
detectron2's ``StandardROIHeads`` + ``FastRCNNOutputLayers``, the other lt_det's
``LTStandardROIHeads`` + ``LTFastRCNNOutputLayers`` with ``softmax_ce``. Each round times
forward + backward + SGD step of both on the same batch (order alternating between rounds, so a
load change on a shared machine hits both alike); the median ratio lt_det / stock is printed.
Target: <= 1.03.

    python tools/benchmark_train_iteration.py [--rounds 15] [--threads 2] [--device cpu|cuda]

Needs the synthetic set (``make data``).
"""
import argparse
import copy
import os
import statistics
import time

import torch

import lt_det.modeling  # noqa: F401  (ROI heads registration)
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from lt_det.builtin import setup_environment
from lt_det.config import add_lt_det_config
from lt_det.data import LTDatasetMapper

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs/demo/mask_rcnn_R_18_FPN_synthetic_lt.yaml")


def demo_cfg(roi_heads: str, device: str):
    cfg = get_cfg()
    add_lt_det_config(cfg)
    cfg.merge_from_file(CONFIG)
    cfg.MODEL.ROI_HEADS.NAME = roi_heads
    cfg.MODEL.DEVICE = device
    return cfg


def time_step(model, optimizer, batch, device) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    losses = sum(model(batch).values())
    optimizer.zero_grad()
    losses.backward()
    optimizer.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    setup_environment()
    torch.set_num_threads(args.threads)

    stock_cfg = demo_cfg("StandardROIHeads", args.device)
    lt_cfg = demo_cfg("LTStandardROIHeads", args.device)
    torch.manual_seed(0)
    stock = build_model(stock_cfg)
    ours = build_model(lt_cfg)
    missing, unexpected = ours.load_state_dict(stock.state_dict(), strict=False)
    assert not unexpected and not missing, (missing, unexpected)

    mapper = LTDatasetMapper(stock_cfg, is_train=True)
    dicts = DatasetCatalog.get(stock_cfg.DATASETS.TRAIN[0])[: stock_cfg.SOLVER.IMS_PER_BATCH]
    batch = [mapper(copy.deepcopy(d)) for d in dicts]
    models = {"stock": stock, "lt_det": ours}
    optimizers = {k: torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9) for k, m in models.items()}
    times = {k: [] for k in models}
    with EventStorage():
        for k in models:  # warm-up
            models[k].train()
            time_step(models[k], optimizers[k], batch, args.device)
        for r in range(args.rounds):
            order = ("stock", "lt_det") if r % 2 == 0 else ("lt_det", "stock")
            for k in order:
                times[k].append(time_step(models[k], optimizers[k], batch, args.device))
    ratios = [a / b for a, b in zip(times["lt_det"], times["stock"])]
    print(f"device {args.device}, {args.threads} threads, batch {len(batch)} images, {args.rounds} rounds")
    print("| predictor | median s / iteration |")
    print("|---|---|")
    for k in models:
        print(f"| {k} | {statistics.median(times[k]):.3f} |")
    print(f"median ratio lt_det / stock (per round): {statistics.median(ratios):.3f} (target <= 1.03)")


if __name__ == "__main__":
    main()

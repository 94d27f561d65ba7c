#!/usr/bin/env python
"""Peak memory of mask-head inference: detectron2's head against the class-select head.

    python tools/benchmark_mask_head.py [--detections 300] [--classes 1203] [--chunk 64]

Runs each head's inference (4 convs of 256 channels, deconv, 1x1 predictor: detectron2's
``MaskRCNNConvUpsampleHead`` defaults) on random 14x14 RoI features for one image's detections,
each in a fresh subprocess on CPU, and prints the time and how far the forward pass raised the
process's peak resident memory above its peak before the pass (VmHWM, Linux). Pasting into the
image is the same for both heads and not included.
"""
import argparse
import json
import subprocess
import sys
import time

import torch

import lt_det  # noqa: F401
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads.mask_head import MaskRCNNConvUpsampleHead
from detectron2.structures import Boxes, Instances

from lt_det.modeling.mask_head import ClassSelectMaskRCNNConvUpsampleHead


def _peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024  # kB


def _worker(args) -> None:
    torch.set_num_threads(2)
    kwargs = dict(input_shape=ShapeSpec(channels=256, height=14, width=14), num_classes=args.classes,
                  conv_dims=[256] * 5)
    head = (MaskRCNNConvUpsampleHead(**kwargs) if args.head == "detectron2"
            else ClassSelectMaskRCNNConvUpsampleHead(**kwargs, inference_chunk_size=args.chunk)).eval()
    x = torch.randn(args.detections, 256, 14, 14)
    inst = Instances((800, 1333))
    inst.pred_boxes = Boxes(torch.rand(args.detections, 4) * 400)
    inst.pred_classes = torch.randint(args.classes, (args.detections,))
    before = _peak_rss_mib()
    start = time.perf_counter()
    with torch.no_grad():
        head(x, [inst])
    print(json.dumps({"seconds": time.perf_counter() - start, "extra_peak_mib": _peak_rss_mib() - before}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detections", type=int, default=300)
    parser.add_argument("--classes", type=int, default=1203)
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--head", choices=["detectron2", "class_select"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.head:
        return _worker(args)
    logits_mib = args.detections * args.classes * 28 * 28 * 4 / 2**20
    print(f"{args.detections} detections, {args.classes} classes: all-class fp32 mask logits = {logits_mib:.0f} MiB")
    print("| head | time (s) | peak memory above pre-forward peak (MiB) |\n|---|---:|---:|")
    for head in ("detectron2", "class_select"):
        out = subprocess.run([sys.executable, __file__, "--head", head, "--detections", str(args.detections),
                              "--classes", str(args.classes), "--chunk", str(args.chunk)],
                             check=True, capture_output=True, text=True)
        m = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {head}{'' if head == 'detectron2' else f' (chunk {args.chunk})'} | {m['seconds']:.1f} | {m['extra_peak_mib']:.0f} |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""The checks only a GPU can make, in one run of a few minutes (at most 8 on one GPU):

1. **Agreement**: every loss's fused path against its reference on the device (value and
   gradient, the same random draws), in fp32.
2. **Speed**: forward + backward of reference, fused and softmax CE at LVIS scale (R = 8192 RoIs,
   K = 1203 classes, LVIS v1 statistics), in fp32 and with the logits produced under bf16 / fp16
   autocast; the first fused call's time (compilation) per loss.
3. **Training**: a few SGD steps of the LVIS-sized box predictor (1203 classes, 1024-d features,
   box regression included) with the fused and with the reference loss from the same start on
   the same data; their loss curves must agree.

    python tools/gpu_check.py [--device cuda] [--output gpu_check.json]
    python tools/gpu_check.py --tiny --device cpu     # seconds: what the test suite runs

Prints tables and writes every number to ``--output`` (JSON). Exits non-zero when the fused and
reference paths disagree (tolerances: 1e-5 relative on values and per-step training losses, 1e-5
absolute on gradients; set for fp32 on a GPU's reordered reductions).
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from lt_det.losses import fused, get_loss_class, list_losses
from lt_det.modeling import LTFastRCNNOutputLayers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmark_losses import build, register_stats  # noqa: E402  (a sibling tool)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRAWS_UNIFORM = {"droploss", "softmax_eql", "droploss+gumbel"}  # reference takes the fused U
VALUE_RTOL, GRAD_ATOL = 1e-5, 1e-5


def variants(names=None):
    """(label, loss name, config overrides) of every registered loss with a fused path, and the
    Gumbel activation where it is an option (GOL = droploss+gumbel)."""
    rows = [(n, n, ()) for n in list_losses() if get_loss_class(n).has_fused_path()]
    rows += [(f"{n}+gumbel", n, ("MODEL.LT_LOSS.ACTIVATION", "gumbel")) for n in ("eql", "droploss", "federated")]
    return [r for r in rows if names is None or r[0] in names]


def lvis_labels(num_rois, num_classes, gen):
    """(R,) labels with a 25% foreground share, as the RoI sampler gives."""
    num_fg = num_rois // 4
    gt = torch.cat([torch.randint(0, num_classes, (num_fg,), generator=gen), torch.full((num_rois - num_fg,), num_classes)])
    return gt[torch.randperm(num_rois, generator=gen)]


def lvis_batch(num_rois, num_classes, num_logits, device, seed=0):
    """(R, L) logits and (R,) labels (:func:`lvis_labels`)."""
    gen = torch.Generator().manual_seed(seed)
    gt = lvis_labels(num_rois, num_classes, gen)
    return (torch.randn(num_rois, num_logits, generator=gen) * 2).to(device), gt.to(device)


def agreement(label, loss, logits, gt):
    """(relative value difference, max absolute gradient difference) of fused vs reference."""
    state = {k: v.clone() for k, v in loss.state_dict().items()}
    outs = []
    for path in ("fused", "reference"):
        loss.load_state_dict(state)
        torch.manual_seed(0)
        extras = {}
        if path == "reference" and label in DRAWS_UNIFORM:
            keys = fused.draw_keys(logits.device)
            extras["u"] = fused.uniform(keys, torch.arange(len(gt), device=logits.device), logits.shape[1])
        z = logits.clone().requires_grad_()
        value = (loss.fused_loss if path == "fused" else loss.loss)(z, gt, **extras)
        value.backward()
        outs.append((value.item(), z.grad))
    (v_fused, g_fused), (v_ref, g_ref) = outs
    return abs(v_fused - v_ref) / max(abs(v_ref), 1e-12), (g_fused - g_ref).abs().max().item()


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def speed(losses, logits, gt, device, dtype, repeats):
    """{implementation: median seconds} of forward + backward, logits cast to ``dtype`` as a layer
    under autocast would produce them; the first fused call's seconds as "first_fused"."""
    x = logits.to(dtype)
    out = {}
    for impl, loss in losses.items():
        def step():
            z = x.detach().requires_grad_()
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                value = loss(z, gt)
            value.backward()

        first = timed(step, device)
        if impl == "fused":
            out["first_fused"] = first
        out[impl] = statistics.median(timed(step, device) for _ in range(repeats))
    return out


def predictor_steps(loss, num_classes, feature_dim, num_rois, steps, device):
    """Per-step total loss (cls + box) of SGD on an LVIS-sized box predictor from a fixed start."""
    torch.manual_seed(0)
    predictor = LTFastRCNNOutputLayers(ShapeSpec(channels=feature_dim), cls_loss=loss, num_classes=num_classes,
                                       box2box_transform=Box2BoxTransform((10.0, 10.0, 5.0, 5.0))).to(device)
    optimizer = torch.optim.SGD(predictor.parameters(), lr=0.02, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    history = []
    with EventStorage():
        for _ in range(steps):
            features = torch.randn(num_rois, feature_dim, generator=gen).to(device)
            gt = lvis_labels(num_rois, num_classes, gen).to(device)
            boxes = torch.rand(num_rois, 2, generator=gen) * 400
            proposal = torch.cat([boxes, boxes + 50], dim=1).to(device)
            target = (proposal + torch.randn(num_rois, 4, generator=gen).to(device) * 5)
            proposals = Instances((512, 512), proposal_boxes=Boxes(proposal), gt_boxes=Boxes(target), gt_classes=gt)
            torch.manual_seed(len(history))  # the same draws for both implementations
            losses = predictor.losses(predictor(features), [proposals])
            total = sum(losses.values())
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            history.append(total.item())
    return history


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="R = 64, a few losses, 1 repeat: for the tests")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="training steps of the predictor check")
    parser.add_argument("--cat-info", default=os.path.join(REPO, "tests/data/lvis_v1_train_cat_info.json"))
    parser.add_argument("--output", default="gpu_check.json")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: CUDA is not available (use --device cpu --tiny for a dry run)")
    num_classes = register_stats(args.cat_info, 99388)
    num_rois, repeats, steps = (64, 1, 2) if args.tiny else (8192, args.repeats, args.steps)
    names = {"sigmoid_ce", "droploss", "seesaw"} if args.tiny else None
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "R": num_rois, "K": num_classes, "agreement": {}, "speed": {}, "training": {}}
    failed = []
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    if device.type == "cuda":
        dtypes["fp16"] = torch.float16  # fp16 autocast is a CUDA training recipe
    baseline = {"reference": build("softmax_ce", num_classes, "reference").to(device)}
    ce_logits, ce_gt = lvis_batch(num_rois, num_classes, num_classes + 1, device)
    ce = {d: speed(baseline, ce_logits, ce_gt, device, dtype, repeats)["reference"] for d, dtype in dtypes.items()}
    report["softmax_ce"] = ce

    print(f"{report['device']}, torch {torch.__version__}: R = {num_rois}, K = {num_classes}")
    print(f"{'loss':<22}{'value rel':>10}{'grad abs':>10}" + "".join(f"{d + ' ref/CE':>12}{d + ' fused/CE':>14}" for d in dtypes)
          + f"{'compile s':>11}")
    for label, name, opts in variants(names):
        losses = {impl: build(name, num_classes, impl, *opts).to(device) for impl in ("reference", "fused")}
        logits, gt = lvis_batch(num_rois, num_classes, losses["fused"].num_logits(num_classes), device)
        rel, grad = agreement(label, losses["fused"], logits, gt)
        report["agreement"][label] = {"value_rel": rel, "grad_abs": grad}
        if not (rel <= VALUE_RTOL and grad <= GRAD_ATOL):
            failed.append(label)
        line = f"{label:<22}{rel:>10.1e}{grad:>10.1e}"
        report["speed"][label] = {}
        for dname, dtype in dtypes.items():
            t = speed(losses, logits, gt, device, dtype, repeats)
            report["speed"][label][dname] = t
            line += f"{t['reference'] / ce[dname]:>12.2f}{t['fused'] / ce[dname]:>14.2f}"
        line += f"{report['speed'][label]['fp32']['first_fused']:>11.1f}"
        print(line, flush=True)

    # Losses whose random draws are shared by both paths (torch.multinomial, torch.randperm);
    # DropLoss and Softmax EQL draw differently by design (torch.rand / the hash).
    trained = {"sigmoid_ce", "seesaw"} if args.tiny else {"sigmoid_ce", "eql+gumbel", "federated", "seesaw", "bags"}
    train_rois = max(num_rois // 8, 16)  # 2 images x 512 RoIs at full size
    print(f"\nTraining: {steps} SGD steps of the box predictor, K = {num_classes}, R = {train_rois} RoIs")
    for label, name, opts in variants(trained):
        curves = {impl: predictor_steps(build(name, num_classes, impl, *opts), num_classes, 1024, train_rois, steps,
                                        device) for impl in ("reference", "fused")}
        diff = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(curves["fused"], curves["reference"]))
        report["training"][label] = {**curves, "max_rel_diff": diff}
        if diff > VALUE_RTOL:
            failed.append(f"{label} (training)")
        print(f"  {label:<20} reference {[round(v, 4) for v in curves['reference']]}  max rel |fused - ref| = {diff:.1e}")

    report["compile_failures"] = {k: repr(v) for k, v in fused.compile_failures().items()}
    report["failed"] = failed
    with open(args.output, "w") as f:
        json.dump(report, f, indent=1)
    print(f"\nwrote {args.output}; " + (f"DISAGREE: {failed}" if failed else "fused and reference agree"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Cost of the calibration stage at inference, against the box predictor's own inference.

    python tools/benchmark_calibration.py [--rois 1000] [--images 4] [--repeats 7] [--device cpu]

Per round: N images of R RoIs each at LVIS v1 scale (1203 classes, the training statistics of
tests/data/lvis_v1_train_cat_info.json): the loss's test scores of random logits, then
detectron2's ``fast_rcnn_inference`` (score threshold 1e-4, per-class NMS 0.5, top 300: the LVIS
test settings). Each calibration's own time on the same scores is reported as a share of that
uncalibrated predictor inference, measured in the same run (medians of the rounds). The backbone,
RPN, box head and mask head come on top of the baseline, so the share of a whole model's inference
is smaller than the one printed. The NMS work after a calibration depends on how many (RoI, class)
candidates pass the score threshold, which depends on the trained model's scores (random here), so
it is shown as a count, not timed.
"""
import argparse
import json
import os
import statistics
import time

import numpy as np
import torch

import lt_det  # noqa: F401
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference

from lt_det.calibration.fracal import FRACAL
from lt_det.calibration.logit_adjustment import LogitAdjustment, label_prior
from lt_det.calibration.norcal import NorCal, norcal_weights
from lt_det.calibration.tau_norm import TauNormalization
from lt_det.data.class_stats import ClassStats
from lt_det.losses.sigmoid_ce import SigmoidCE
from lt_det.losses.softmax_ce import SoftmaxCE

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_stats(cat_info: str, num_images: int) -> ClassStats:
    with open(cat_info) as f:
        records = sorted(json.load(f), key=lambda c: c["id"])
    return ClassStats.from_records(records, num_images)


def calibrations(stats: ClassStats):
    k = stats.num_classes
    dims = torch.as_tensor(np.random.default_rng(0).uniform(1.0, 2.0, k))  # values in the fits' range
    return {
        "logit_adjustment": LogitAdjustment(label_prior(stats, "instance"), tau=1.0),
        "norcal": NorCal(norcal_weights(stats.tensor("image_count", dtype=torch.float64), 0.6)),
        "fracal": FRACAL(stats.tensor("image_count", dtype=torch.float64), stats.num_images, dims, 2.0),
        "tau_norm": TauNormalization(1.0),
    }


def median_time(fn, repeats, device):
    times = []
    with torch.no_grad():
        fn()  # warm-up
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rois", type=int, default=1000, help="RoIs per image (detectron2's test proposals)")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cat-info", default=os.path.join(REPO, "tests/data/lvis_v1_train_cat_info.json"))
    parser.add_argument("--num-images", type=int, default=99388, help="M (LVIS v1 train: 99,388 annotated)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    stats = load_stats(args.cat_info, args.num_images)
    k, r, n = stats.num_classes, args.rois, args.images
    g = torch.Generator().manual_seed(0)
    features = (torch.randn(n * r, 1024, generator=g)).to(device)
    image_size = (800, 1333)
    xy = torch.rand(n * r, 2, generator=g) * torch.tensor([1200.0, 700.0])
    wh = torch.rand(n * r, 2, generator=g) * 120 + 8
    per_class = torch.cat([xy, xy + wh], dim=1).repeat(1, k) + torch.randn(n * r, 4 * k, generator=g)
    boxes = list(per_class.to(device).split(r, dim=0))
    print(f"{n} images x {r} RoIs, {k} classes, device {device}, median of {args.repeats} rounds")
    for kind, loss in (("softmax", SoftmaxCE(num_classes=k)), ("sigmoid", SigmoidCE(num_classes=k))):
        classifier = torch.nn.Linear(1024, loss.num_logits(k))
        torch.nn.init.normal_(classifier.weight, std=0.1)  # class logits of spread ~3: peaked scores
        torch.nn.init.constant_(classifier.bias, 0.0 if kind == "softmax" else -11.5)  # ~ as many candidates
        classifier, loss = classifier.to(device), loss.to(device)
        with torch.no_grad():
            logits = classifier(features)
            scores = loss.scores(logits)

        def predictor_inference(scores=scores):
            per_image = scores.split(r, dim=0)
            return fast_rcnn_inference(boxes, per_image, [image_size] * n, 1e-4, 0.5, 300)

        base = median_time(lambda: predictor_inference(loss.scores(classifier(features))), args.repeats, device)
        above = int((scores[:, :k] > 1e-4).sum())
        print(f"\n{kind} scores: predictor inference (classifier, scores, threshold, NMS, top 300) "
              f"{1e3 * base:.1f} ms; {above} (RoI, class) candidates above the threshold")
        print(f"  {'':<18}{'calibration':>12}{'% of inference':>16}{'candidates':>12}")
        for name, calibration in calibrations(stats).items():
            calibration = calibration.to(device)
            t = median_time(lambda: calibration(scores, logits, loss, classifier), args.repeats, device)
            with torch.no_grad():
                calibrated = calibration(scores, logits, loss, classifier)
            print(f"  {name:<18}{1e3 * t:>9.2f} ms{100 * t / base:>15.2f}%{int((calibrated[:, :k] > 1e-4).sum()):>12}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""A paper's schedule in epochs as detectron2 iterations, for a config's training set and batch.

    python tools/schedule.py --config-file configs/papers/GOL/mask_rcnn_R_50_FPN_2x_gol.yaml \
        --epochs 24 --steps 16 22 [KEY VALUE ...]

An epoch is one pass over the images detectron2 trains on (after its empty-image filter, N). With
RFS (``DATALOADER.SAMPLER_TRAIN RepeatFactorTrainingSampler``), mmdetection's ``ClassBalancedDataset``
repeats each image ceil(r(I)) times, so an mmdetection RFS epoch is sum_I ceil(r(I)) images, with
r(I) = max over the image's classes of max(1, sqrt(t / f_c)) (both libraries' factor). detectron2's
RFS keeps the iteration count and only changes which images fill it, so matching an mmdetection
RFS run takes ``epochs x sum_I ceil(r(I)) / batch`` iterations; ``--epoch-images plain`` uses N
instead. Iterations are rounded to the nearest, halves up. Prints the numbers and the overrides.
"""
import argparse
import math
from fractions import Fraction
from typing import Sequence, Tuple

from detectron2.config import get_cfg
from detectron2.data import get_detection_dataset_dicts

from lt_det.builtin import setup_environment
from lt_det.config import add_lt_det_config
from lt_det.data.samplers import category_repeat_factors


def iterations(epochs: float, epoch_images: int, batch: int) -> int:
    """``epochs x epoch_images / batch`` rounded to the nearest iteration, halves up."""
    return int(Fraction(epochs) * epoch_images / batch + Fraction(1, 2))


def mmdet_rfs_epoch_images(dataset_dicts: Sequence[dict], repeat_thresh: float, sqrt: bool = True) -> int:
    """sum_I ceil(r(I)): the length of mmdetection's ``ClassBalancedDataset`` over these images.

    The factors are computed in float64, as mmdetection does, so ceil() sees the same values (the
    samplers' float32 factors can move an exact 2.0 above it)."""
    category_sets = [{a["category_id"] for a in d.get("annotations", ())} for d in dataset_dicts]
    ids = sorted(set().union(*category_sets))
    position = {c: i for i, c in enumerate(ids)}
    image_count = [0] * len(ids)
    for cats in category_sets:
        for c in cats:
            image_count[position[c]] += 1
    factors = category_repeat_factors(image_count, len(dataset_dicts), repeat_thresh, sqrt)
    return sum(math.ceil(max((factors[position[c]] for c in cats), default=1.0)) for cats in category_sets)


def schedule(epochs: float, steps: Sequence[float], epoch_images: int, batch: int) -> Tuple[int, Tuple[int, ...]]:
    """(MAX_ITER, STEPS) for ``epochs`` with lr steps at the epochs ``steps``."""
    return iterations(epochs, epoch_images, batch), tuple(iterations(s, epoch_images, batch) for s in steps)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config-file", required=True)
    p.add_argument("--epochs", type=float, required=True, help="the paper's schedule length in epochs")
    p.add_argument("--steps", type=float, nargs="*", default=[], help="the epochs at which the lr steps")
    p.add_argument("--epoch-images", choices=("auto", "plain"), default="auto",
                   help="auto: mmdetection's RFS epoch when the config samples with RFS; plain: N images")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE pairs")
    return p


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    setup_environment()
    cfg = get_cfg()
    add_lt_det_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    dicts = get_detection_dataset_dicts(cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    epoch_images = len(dicts)
    print(f"{', '.join(cfg.DATASETS.TRAIN)}: N = {epoch_images} training images")
    rfs = cfg.DATALOADER.SAMPLER_TRAIN == "RepeatFactorTrainingSampler"
    if rfs and args.epoch_images == "auto":
        t = cfg.DATALOADER.REPEAT_THRESHOLD
        epoch_images = mmdet_rfs_epoch_images(dicts, t, cfg.DATALOADER.REPEAT_SQRT)
        print(f"RFS t = {t}: mmdetection's epoch = sum_I ceil(r(I)) = {epoch_images} images")
    batch = cfg.SOLVER.IMS_PER_BATCH
    max_iter, steps = schedule(args.epochs, args.steps, epoch_images, batch)
    print(f"{args.epochs:g} epochs of {epoch_images} images at batch {batch}: {max_iter} iterations; "
          f"steps at epochs {[f'{s:g}' for s in args.steps]}: {list(steps)}")
    print(f"SOLVER.MAX_ITER {max_iter} SOLVER.STEPS \"{steps}\"")


if __name__ == "__main__":
    main()

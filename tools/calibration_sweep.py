#!/usr/bin/env python
"""Choose a post-hoc calibration's hyper-parameter on a held-out split, in one inference pass.

    python tools/calibration_sweep.py --config-file CFG --weights model_final.pth \
        --method norcal --values 0 0.25 0.5 0.75 1.0 --tune-dataset NAME \
        [--key GAMMA] [--metric segm/AP] [--output-config chosen.yaml] [KEY VALUE ...]

The backbone, RPN and box head run once per image; per value, the calibrated re-scoring, score
threshold, per-class NMS, top-k and the mask head on the kept boxes (lt_det.calibration.sweep; a
cascade runs its ROI heads per value), and each value's detections are evaluated with the
config's LVIS evaluator. Prints the table, writes OUTPUT_DIR/calibration_sweep.json (the table,
the chosen value, the measured seconds) and, with --output-config, the config with the chosen
value (evaluate it on DATASETS.TEST with ``train_net.py --eval-only``). The tuning split must not
be one of DATASETS.TEST. ``--key`` defaults to the method's own (τ, γ, λ: TAU, GAMMA, LAMBDA).
One process (the evaluator gathers nothing across processes here).
"""
import argparse
import json
import logging
import os

import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.utils.logger import setup_logger

from lt_det.builtin import setup_environment
from lt_det.calibration import build_calibration, get_calibration_class
from lt_det.calibration.sweep import check_tuning_split, choose, sweep_calibrations
from lt_det.config import add_lt_det_config, merge_config
from lt_det.modeling.fast_rcnn import read_class_stats

logger = logging.getLogger("lt_det.calibration_sweep")


def value_config(cfg, method: str, key: str, value: float, dataset: str):
    """A copy of ``cfg`` calibrating with ``method`` at ``key = value``, evaluating ``dataset``."""
    out = cfg.clone()
    out.defrost()
    out.TEST.CALIBRATION.METHOD = method
    out.TEST.CALIBRATION[method.upper()][key] = value
    out.DATASETS.TEST = (dataset,)
    return out


def run(args) -> float:
    from lt_det.engine import Trainer  # the model, loader and evaluator train_net.py uses

    cfg = get_cfg()
    add_lt_det_config(cfg)
    merge_config(cfg, args.config_file, args.opts)
    if not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    split = check_tuning_split(cfg, args.tune_dataset)
    key = args.key or get_calibration_class(args.method).sweep_key
    if key not in cfg.TEST.CALIBRATION[args.method.upper()]:
        raise KeyError(f"TEST.CALIBRATION.{args.method.upper()} has no key {key}; it has "
                       f"{sorted(cfg.TEST.CALIBRATION[args.method.upper()])}")
    model = Trainer.build_model(cfg)
    DetectionCheckpointer(model).load(args.weights)
    model.eval()
    stats = read_class_stats(cfg)
    configs = [value_config(cfg, args.method, key, v, split) for v in args.values]
    calibrations = [build_calibration(c, stats) for c in configs]
    calibrations = [None if c is None else c.to(model.device) for c in calibrations]
    out_dir = os.path.join(cfg.OUTPUT_DIR, "calibration_sweep")
    evaluators = [Trainer.build_evaluator(c, split, os.path.join(out_dir, f"{key.lower()}_{v:g}"))
                  for c, v in zip(configs, args.values)]
    results, seconds = sweep_calibrations(model, Trainer.build_test_loader(cfg, split), calibrations, evaluators)
    metric = args.metric or ("segm/AP" if cfg.MODEL.MASK_ON else "bbox/AP")
    best, table = choose(args.values, results, metric)
    logger.info("{} sweep of TEST.CALIBRATION.{}.{} on {}:\n{}\nchosen: {} = {}\nseconds: {}".format(
        args.method, args.method.upper(), key, split, "\n".join(f"  {v:<8g} {metric} = {m:.4f}" for v, m in table),
        key, best, json.dumps({k: round(s, 2) for k, s in seconds.items()})))
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "calibration_sweep.json"), "w") as f:
        json.dump({"method": args.method, "key": key, "dataset": split, "metric": metric, "table": table,
                   "best": best, "seconds": seconds}, f, indent=2)
    if args.output_config:
        chosen = configs[args.values.index(best)]
        chosen.DATASETS.TEST = cfg.DATASETS.TEST  # evaluated on the evaluation split, chosen on `split`
        chosen.MODEL.WEIGHTS = args.weights
        with open(args.output_config, "w") as f:
            f.write(f"# {args.method}: TEST.CALIBRATION.{args.method.upper()}.{key} = {best}, chosen by {metric} on "
                    f"{split} (tools/calibration_sweep.py)\n")
            f.write(chosen.dump())
        logger.info(f"Wrote {args.output_config}")
    return best


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config-file", required=True)
    p.add_argument("--weights", required=True, help="the trained, uncalibrated model (.pth)")
    p.add_argument("--method", required=True, help="a registered calibration (lt_det.calibration.list_calibrations())")
    p.add_argument("--values", type=float, nargs="+", required=True, help="the grid of the swept key")
    p.add_argument("--key", default="", help="the swept key of TEST.CALIBRATION.<METHOD> (default: the method's)")
    p.add_argument("--tune-dataset", default="", help="registered held-out split (not in DATASETS.TEST)")
    p.add_argument("--metric", default="", help="flattened results key to maximise (default segm/AP, bbox/AP "
                                                "without masks)")
    p.add_argument("--output-config", default="", help="write the config with the chosen value here")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    setup_environment()
    setup_logger(name="lt_det")
    return run(args)


if __name__ == "__main__":
    main()

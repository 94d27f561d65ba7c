#!/usr/bin/env python
"""τ-normalisation, post hoc (no training; Kang et al., ICLR 2020): apply one τ to a checkpoint,
or sweep τ on a held-out split and report the best.

    # one τ: writes a checkpoint whose foreground classifier rows are w_c / ||w_c||^τ
    python tools/tau_norm.py --config-file CFG --weights model_final.pth apply --tau 1.0 --output model_tau1.pth
    # sweep: evaluates each τ on a held-out split (never one of DATASETS.TEST), reports the best,
    # and writes OUTPUT_DIR/tau_sweep.json (+ the best checkpoint with --output)
    python tools/tau_norm.py --config-file CFG --weights model_final.pth sweep --taus 0 0.25 0.5 0.75 1.0 \
        --tune-dataset my_heldout_split --metric bbox/AP OUTPUT_DIR output/tau_sweep

The config gives K (``MODEL.ROI_HEADS.NUM_CLASSES``, the leading foreground rows) and, for a sweep,
the model and the evaluator; trailing ``KEY VALUE`` pairs override it as in train_net.py.
"""
import argparse
import json
import logging
import os
from typing import Callable, Dict, List, Sequence, Tuple

import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.evaluation.testing import flatten_results_dict
from detectron2.utils.logger import setup_logger

from lt_det.builtin import setup_environment
from lt_det.calibration.sweep import check_tuning_split
from lt_det.config import add_lt_det_config, merge_config
from lt_det.losses import build_loss
from lt_det.modeling.tau_norm import tau_normalize_state_dict

logger = logging.getLogger("lt_det.tau_norm")


def apply_to_checkpoint(src: str, dst: str, tau: float, class_rows: Sequence[int]) -> None:
    """Writes ``{"model": τ-normalised state dict, "tau": τ}`` from the checkpoint ``src``."""
    if not os.path.isfile(src):
        raise FileNotFoundError(f"Checkpoint not found: {src}")
    state = torch.load(src, map_location="cpu")["model"]
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    torch.save({"model": tau_normalize_state_dict(state, tau, class_rows), "tau": tau}, dst)
    logger.info(f"τ = {tau}: wrote {dst}")


def tau_sweep(
    model: torch.nn.Module,
    taus: Sequence[float],
    class_rows: Sequence[int],
    evaluate: Callable[[torch.nn.Module, float], Dict],
    metric: str,
) -> Tuple[float, List[Tuple[float, float]]]:
    """Evaluates ``model`` with its classifier τ-normalised for each τ; higher ``metric`` is better.

    Args:
        class_rows: the classifier row of each class (the loss's ``classifier_rows()``).
        evaluate: (model, τ) -> detectron2 results dict (nested; ``metric`` is a flattened key
            such as "bbox/AP").
    Returns:
        the best τ and every (τ, value); the model is left with the best τ applied.
    """
    if not taus:
        raise ValueError("τ sweep: no τ given")
    original = {k: v.clone() for k, v in model.state_dict().items()}
    scores = []
    for tau in taus:
        model.load_state_dict(tau_normalize_state_dict(original, tau, class_rows))
        results = flatten_results_dict(evaluate(model, tau))
        if metric not in results:
            raise KeyError(f"τ sweep: metric {metric!r} not in the results; available: {sorted(results)}")
        scores.append((tau, float(results[metric])))
        logger.info(f"τ = {tau}: {metric} = {scores[-1][1]:.4f}")
    best = max(scores, key=lambda s: s[1])[0]
    model.load_state_dict(tau_normalize_state_dict(original, best, class_rows))
    return best, scores


def setup(args):
    cfg = get_cfg()
    add_lt_det_config(cfg)
    merge_config(cfg, args.config_file, args.opts)
    if not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    return cfg


def run_sweep(cfg, args) -> float:
    from lt_det.engine import Trainer  # the evaluator train_net.py uses

    cfg.DATASETS.TEST = (check_tuning_split(cfg, args.tune_dataset),)
    cfg.freeze()
    model = Trainer.build_model(cfg)
    DetectionCheckpointer(model).load(args.weights)
    model.eval()

    def evaluate(model, tau):
        tau_cfg = cfg.clone()
        tau_cfg.defrost()
        tau_cfg.OUTPUT_DIR = os.path.join(cfg.OUTPUT_DIR, f"tau_{tau:g}")
        return Trainer.test(tau_cfg, model)

    class_rows = model.roi_heads.box_predictor.cls_loss.classifier_rows()
    best, scores = tau_sweep(model, args.taus, class_rows, evaluate, args.metric)
    logger.info("τ sweep on {}:\n{}\nbest τ = {}".format(
        cfg.DATASETS.TEST[0], "\n".join(f"  τ = {t:<6g} {args.metric} = {v:.4f}" for t, v in scores), best))
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    with open(os.path.join(cfg.OUTPUT_DIR, "tau_sweep.json"), "w") as f:
        json.dump({"metric": args.metric, "dataset": cfg.DATASETS.TEST[0], "scores": scores, "best_tau": best}, f, indent=2)
    if args.output:
        torch.save({"model": model.state_dict(), "tau": best}, args.output)
    return best


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config-file", required=True)
    p.add_argument("--weights", required=True, help="the trained model (a detectron2 .pth checkpoint)")
    sub = p.add_subparsers(dest="command", required=True)
    apply = sub.add_parser("apply", help="write a checkpoint with one τ applied")
    apply.add_argument("--tau", type=float, default=1.0, help="τ (default 1, Kang et al.)")
    apply.add_argument("--output", required=True)
    sweep = sub.add_parser("sweep", help="evaluate several τ on a validation split")
    sweep.add_argument("--taus", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5])
    sweep.add_argument("--tune-dataset", default="", help="registered held-out split (not in DATASETS.TEST)")
    sweep.add_argument("--metric", default="bbox/AP", help="flattened results key to maximise")
    sweep.add_argument("--output", default="", help="also write the checkpoint with the best τ")
    for command in (apply, sweep):
        command.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    setup_environment()
    setup_logger(name="lt_det")
    cfg = setup(args)
    if args.command == "apply":
        return apply_to_checkpoint(args.weights, args.output, args.tau, build_loss(cfg).classifier_rows())
    return run_sweep(cfg, args)


if __name__ == "__main__":
    main()

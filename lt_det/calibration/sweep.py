"""Choosing a calibration's hyper-parameter (τ, γ, λ) on a held-out split, in one inference pass.

A calibration only re-scores the box predictor's RoIs, so everything up to the box predictor's
class logits and box deltas (backbone, FPN, RPN, RoI pooling, box head: most of the inference
time) is the same for every value of the grid. The sweep runs it once per batch; for each grid
value it then runs the rest of detectron2's ROI-head inference with that calibration
(re-scoring, score threshold, per-class NMS, top-k, the mask head on the kept boxes) and hands
the detections to that value's evaluator. The detections of each value are exactly those of a
full inference with that value (``StandardROIHeads`` does the same steps in the same order). The
per-class NMS and the mask head depend on the calibrated scores, so they cannot be shared: caching
the uncalibrated model's final detections would be wrong (its score threshold and top-k have
already dropped RoIs that a calibration would keep). Cascade heads (several box predictors, whose
scores are averaged) run their whole ROI heads once per value, after the shared backbone and RPN.

Tuning on the evaluation split would report a number chosen on the test data; the sweep refuses
a split that is in DATASETS.TEST.
"""
import logging
import time
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from detectron2.evaluation import DatasetEvaluator
from detectron2.evaluation.testing import flatten_results_dict
from detectron2.modeling.postprocessing import detector_postprocess

from .base import Calibration

__all__ = ["check_tuning_split", "sweep_calibrations", "choose"]

logger = logging.getLogger(__name__)


def check_tuning_split(cfg, split: str) -> str:
    """``split``, unless it is empty or one of cfg.DATASETS.TEST (ValueError says why)."""
    if not split:
        raise ValueError("Name the held-out split to tune on (--tune-dataset): a registered dataset that is "
                         f"neither evaluated on (DATASETS.TEST = {tuple(cfg.DATASETS.TEST)}) nor trained on")
    if split in cfg.DATASETS.TEST:
        raise ValueError(f"Refusing to tune on '{split}': it is an evaluation split (DATASETS.TEST = "
                         f"{tuple(cfg.DATASETS.TEST)}), so its metrics would be chosen on the test data. Tune on "
                         "a held-out split (for example images kept out of training) and evaluate the chosen value "
                         "on DATASETS.TEST")
    if split in cfg.DATASETS.TRAIN:
        logger.warning(f"Tuning on the training split '{split}': the model has seen these images")
    return split


def _box_predictions(heads, features, proposals):
    """(class logits (R, L), box deltas (R, K * 4)) of a single-stage ROI head: its box branch up
    to the predictor, which no calibration changes (as ``StandardROIHeads._forward_box`` runs it)."""
    pooled = heads.box_pooler([features[f] for f in heads.box_in_features], [p.proposal_boxes for p in proposals])
    return heads.box_predictor(heads.box_head(pooled))


@torch.no_grad()
def sweep_calibrations(model, data_loader, calibrations: Sequence[Optional[Calibration]],
                       evaluators: Sequence[DatasetEvaluator]) -> Tuple[List[Dict], Dict[str, float]]:
    """Evaluates ``model`` (a detectron2 ``GeneralizedRCNN``, in eval mode) once per calibration.

    Args:
        calibrations: G calibrations (None: the uncalibrated scores).
        evaluators: G evaluators, one per calibration, not yet reset.

    Returns:
        the G results dicts, and the seconds spent in the shared part (backbone, RPN and, for a
        single-stage ROI head, its box branch), the per-value ROI-head inference of all G values,
        and the G evaluations.
    """
    heads = model.roi_heads
    cascade = isinstance(heads.box_predictor, nn.ModuleList)  # a cascade: one predictor per stage
    predictors = list(heads.box_predictor) if cascade else [heads.box_predictor]
    saved = [p.calibration for p in predictors]
    for evaluator in evaluators:
        evaluator.reset()
    seconds = {"shared": 0.0, "per_value": 0.0, "evaluation": 0.0}
    try:
        for inputs in data_loader:
            start = time.perf_counter()
            images = model.preprocess_image(inputs)
            features = model.backbone(images.tensor)
            proposals, _ = model.proposal_generator(images, features, None)
            predictions = None if cascade else _box_predictions(heads, features, proposals)
            seconds["shared"] += time.perf_counter() - start
            for calibration, evaluator in zip(calibrations, evaluators):
                start = time.perf_counter()
                for predictor in predictors:
                    predictor.calibration = calibration
                if cascade:
                    results, _ = heads(images, features, proposals, None)
                else:
                    instances, _ = heads.box_predictor.inference(predictions, proposals)
                    results = heads.forward_with_given_boxes(features, instances)
                outputs = [{"instances": detector_postprocess(r, x.get("height", s[0]), x.get("width", s[1]))}
                           for r, x, s in zip(results, inputs, images.image_sizes)]
                seconds["per_value"] += time.perf_counter() - start
                evaluator.process(inputs, outputs)
    finally:
        for predictor, calibration in zip(predictors, saved):
            predictor.calibration = calibration
    start = time.perf_counter()
    results = [evaluator.evaluate() for evaluator in evaluators]
    seconds["evaluation"] = time.perf_counter() - start
    return results, seconds


def choose(values: Sequence[float], results: Sequence[Dict], metric: str) -> Tuple[float, List[Tuple[float, float]]]:
    """The value whose flattened ``metric`` (e.g. "segm/AP") is highest (the first on ties), and
    every (value, metric) pair. A metric the results lack is an error listing the ones they have."""
    table = []
    for value, result in zip(values, results):
        flat = flatten_results_dict(result)
        if metric not in flat:
            raise KeyError(f"No metric '{metric}' in the results; they have {sorted(flat)}")
        table.append((value, float(flat[metric])))
    best = max(table, key=lambda row: row[1])[0]
    return best, table

"""Accumulated positive and negative logit gradients per class: Equalization Loss's Figure 1
(Tan et al., "Equalization Loss for Long-Tailed Object Recognition", CVPR 2020).

For foreground class j and training step t, with R RoIs, labels gt_i and classification loss L_t,

    pos[j] = sum_t sum_{i: gt_i = j}  |dL_t / dz_ij|
    neg[j] = sum_t sum_{i: gt_i != j} |dL_t / dz_ij|     (background RoIs included)

EQL plots both and their ratio pos / neg: rare classes receive far more negative than positive
gradient. Opt-in with ``DIAGNOSTICS.LOGIT_GRAD_STATS``
(:mod:`lt_det.engine.diagnostics_config`); :class:`LogitGradStatsHook` writes the totals to
``OUTPUT_DIR/logit_grad_stats.json``.

Only the first K logit columns are recorded (column j as class j). That is the class logit for
every loss whose layout starts with the K class logits in class order: softmax CE and its family
(K + 1, background last), the sigmoid family (K, or K + 1), Seesaw (K + 2: then two objectness
logits). BAGS's grouped layout does not: its columns are group slices ([background, others],
then each group's classes and an "others" slot), so its column j is not class j.
"""
import json
import os

import torch
from torch.nn.parallel import DistributedDataParallel

from detectron2.engine import AMPTrainer, HookBase
from detectron2.utils import comm

__all__ = ["LogitGradStats", "LogitGradStatsHook"]

STATS_FILE = "logit_grad_stats.json"


class LogitGradStats:
    """Running per-class sums of |dL/dz| over training steps.

    Attributes:
        pos, neg: (K,) float64 CPU tensors, the sums defined in the module docstring.
        iterations: number of :meth:`update` calls (steps recorded).
    """

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.pos = torch.zeros(num_classes, dtype=torch.float64)
        self.neg = torch.zeros(num_classes, dtype=torch.float64)
        self.iterations = 0

    def update(self, grad: torch.Tensor, gt_classes: torch.Tensor) -> None:
        """Adds one step.

        Args:
            grad: (R, C) gradient of the loss w.r.t. the logits, C >= K; columns >= K are ignored.
            gt_classes: (R,) labels in [0, K], K = background.
        """
        K = self.num_classes
        if grad.shape[1] < K:
            raise ValueError(f"Gradient has {grad.shape[1]} columns, fewer than the {K} classes")
        magnitude = grad.detach()[:, :K].abs()
        # (R, K) one-hot as a bool mask, not F.one_hot's int64: at LVIS scale (K = 1203, 512 RoIs
        # per image) each (R, K) int64 or float64 temporary is 5 MB per image. Background rows
        # (label K) are all False: their whole row is negative.
        is_gt = gt_classes[:, None] == torch.arange(K, device=gt_classes.device)
        # Accumulated in float64: a run adds up ~10^5 steps of R terms each.
        pos = (magnitude * is_gt).sum(dim=0, dtype=torch.float64)
        self.pos += pos.cpu()
        self.neg += (magnitude.sum(dim=0, dtype=torch.float64) - pos).cpu()
        self.iterations += 1

    def observe(self, logits: torch.Tensor, gt_classes: torch.Tensor) -> None:
        """Records this step's gradient w.r.t. ``logits`` (R, C) when backward reaches it;
        ``gt_classes`` (R,). Nothing is recorded for logits without ``requires_grad``."""
        if not logits.requires_grad:
            return

        def record(grad):
            self.update(grad, gt_classes)  # returns None: the gradient passes on unchanged

        logits.register_hook(record)

    def state(self) -> dict:
        """JSON-serialisable totals: ``{"num_classes": K, "iterations": n, "pos": [K floats],
        "neg": [K floats]}``."""
        return {"num_classes": self.num_classes, "iterations": self.iterations,
                "pos": self.pos.tolist(), "neg": self.neg.tolist()}


class LogitGradStatsHook(HookBase):
    """Records :class:`LogitGradStats` on the box predictor during training and writes them to
    ``{output_dir}/logit_grad_stats.json`` after training (also after a crash: ``iterations``
    then says how many steps were recorded).

    The predictor must be an :class:`lt_det.modeling.LTFastRCNNOutputLayers` (a single one:
    cascade heads hold one per stage and are refused). Mixed precision is refused too: its
    backward sees the loss times a changing scale, and overflowing steps give infinite gradients
    that would stay in the sums. The gradient is that of the loss as trained, the predictor's
    ``loss_weight["loss_cls"]`` included (1 from a config). Each process records its own RoIs and no
    collective runs (one in ``after_train`` would hang when another process crashed): with several
    processes the file holds rank 0's share, about 1 / world size of the RoIs.

    Cost per step: a few passes over the (R, K) logit gradient and a (K,) copy to the CPU, which
    waits for the GPU to reach that point of the backward pass.
    """

    def __init__(self, output_dir: str):
        self.output_dir = output_dir
        self.stats = None

    def before_train(self):
        # DefaultTrainer runs the steps in an inner trainer; a bare SimpleTrainer is its own.
        if isinstance(getattr(self.trainer, "_trainer", self.trainer), AMPTrainer):
            raise ValueError("DIAGNOSTICS.LOGIT_GRAD_STATS does not support SOLVER.AMP.ENABLED")
        model = self.trainer.model
        if isinstance(model, DistributedDataParallel):
            model = model.module
        predictor = model.roi_heads.box_predictor
        if not hasattr(predictor, "logit_grad_stats"):
            raise TypeError(f"DIAGNOSTICS.LOGIT_GRAD_STATS needs lt_det's LTFastRCNNOutputLayers as "
                            f"the box predictor, not {type(predictor).__name__}")
        self.stats = LogitGradStats(predictor.num_classes)
        predictor.logit_grad_stats = self.stats

    def after_train(self):
        # No stats: before_train failed, and its error is the one to see.
        if self.stats is None or not comm.is_main_process():
            return
        os.makedirs(self.output_dir, exist_ok=True)
        with open(os.path.join(self.output_dir, STATS_FILE), "w") as f:
            json.dump(self.stats.state(), f)

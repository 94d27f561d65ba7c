"""The interface every box-classification loss implements, and what several losses share.

Shape shorthand in lt_det.losses:

    R: number of RoIs of one training step (all images concatenated; foreground + background)
    K: number of foreground classes (LVIS v1: 1203)
    gt_classes: (R,) int64 labels in [0, K]; [0, K) are foreground classes and K is background
    logits: (R, L) with L = loss.num_logits(K) (K + 1 for detectron2's layout)
    scores: (R, K + 1) probabilities whose last column is background (fast_rcnn_inference drops it)
"""
import logging
from abc import ABCMeta, abstractmethod

import numpy as np
import torch
from torch import nn

from lt_det.data.class_stats import ClassStats, get_class_stats

from .functional import BINARY_ACTIVATIONS, prior_bias

logger = logging.getLogger(__name__)


class LTLoss(nn.Module, metaclass=ABCMeta):
    """A box-classification loss that also owns its logit layout and test-time scores.

    Subclasses implement :meth:`loss` and :meth:`scores`, and override :meth:`num_logits` /
    :meth:`init_classifier` when they differ from detectron2's (K + 1 logits, weights
    N(0, 0.01), bias 0). Their ``__init__`` is ``@configurable`` with a ``from_config(cls, cfg)``
    classmethod, so ``build_loss(cfg)`` can construct any registered loss.
    """

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes

    def num_logits(self, num_classes: int) -> int:
        """Number of classifier outputs for ``num_classes`` foreground classes."""
        return num_classes + 1

    def init_classifier(self, linear: nn.Linear) -> None:
        """Initialise the classifier layer (detectron2's FastRCNNOutputLayers init by default)."""
        nn.init.normal_(linear.weight, std=0.01)
        nn.init.constant_(linear.bias, 0.0)

    def forward(self, logits: torch.Tensor, gt_classes: torch.Tensor, **extras) -> torch.Tensor:
        """Training loss (scalar) of (R, L) logits and (R,) labels in [0, K].

        ``extras`` carries whatever the caller knows about the RoIs (the predictor passes
        ``proposals``: list[Instances] of the step); a loss reads what it needs and ignores the rest.
        An empty batch gives a zero that is still connected to ``logits``. Losses compute in fp32.
        """
        if gt_classes.numel() == 0:
            return logits.sum() * 0.0
        return self.loss(logits.float(), gt_classes, **extras)

    @abstractmethod
    def loss(self, logits: torch.Tensor, gt_classes: torch.Tensor, **extras) -> torch.Tensor:
        """The loss of a non-empty batch: (R, L) fp32 logits, (R,) labels -> scalar."""

    @abstractmethod
    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Test-time class probabilities: (R, L) logits -> (R, K + 1), background last."""

    def predict_classes(self, logits: torch.Tensor) -> torch.Tensor:
        """(R,) predicted labels in [0, K] (K = background), for training statistics only."""
        return self.scores(logits).argmax(dim=1)


def append_background(probs: torch.Tensor) -> torch.Tensor:
    """(R, K) foreground probabilities -> (R, K + 1) with a zero background column."""
    return torch.cat([probs, probs.new_zeros(probs.shape[0], 1)], dim=1)


class BinaryLoss(LTLoss):
    """Base of the sigmoid-family losses with one binary classifier per foreground class.

    Logits: (R, K) when ``background_logit`` is False (no background logit), else (R, K + 1)
    with the background logit unused by the loss (detectron2 main's sigmoid layout).
    The activation is "sigmoid" or "gumbel" (GOL); it sets the classifier init: sigmoid uses
    weights N(0, 0.01) and bias -log((1 - pi) / pi) (bias 0 when pi = 0); Gumbel uses GOL's
    released constant weights 0.001 and bias -2.
    Test scores: the activation on the K class logits, then a background column (zero, or the
    activation of the unused background logit, which detectron2 drops anyway).
    """

    def __init__(self, num_classes: int, activation: str, prior_prob: float, background_logit: bool):
        super().__init__(num_classes)
        if activation not in BINARY_ACTIVATIONS:
            raise ValueError(f"Unknown activation '{activation}'; expected one of {sorted(BINARY_ACTIVATIONS)}")
        self.activation = BINARY_ACTIVATIONS[activation]
        self.prior_prob = prior_prob
        self.background_logit = background_logit

    def num_logits(self, num_classes: int) -> int:
        return num_classes + int(self.background_logit)

    def init_classifier(self, linear: nn.Linear) -> None:
        if self.activation.name == "gumbel":
            nn.init.constant_(linear.weight, 0.001)
            nn.init.constant_(linear.bias, -2.0)
            return
        nn.init.normal_(linear.weight, std=0.01)
        nn.init.constant_(linear.bias, prior_bias(self.prior_prob) if self.prior_prob > 0 else 0.0)

    def class_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """(R, L) -> the (R, K) foreground-class logits."""
        return logits[:, : self.num_classes]

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        probs = self.activation.probs(logits)
        return probs if self.background_logit else append_background(probs)

    def predict_classes(self, logits: torch.Tensor) -> torch.Tensor:
        """Most probable class, or background when no class reaches probability 0.5."""
        best_prob, best = self.activation.probs(self.class_logits(logits)).max(dim=1)
        return torch.where(best_prob >= 0.5, best, torch.full_like(best, self.num_classes))


def class_stats_for(cfg, loss_name: str) -> ClassStats:
    """Statistics of cfg.DATASETS.TRAIN, checked against MODEL.ROI_HEADS.NUM_CLASSES.

    Raises:
        KeyError: the training dataset has no class statistics (says how to add them).
        ValueError: the config's class count differs from the dataset's (says what to set).
    """
    try:
        stats = get_class_stats(cfg.DATASETS.TRAIN)
    except KeyError as e:
        raise KeyError(
            f"Loss '{loss_name}' (MODEL.LT_LOSS.NAME) needs per-class training statistics. "
            f"{e.args[0]} Or choose a loss that needs none (softmax_ce, sigmoid_ce, focal, "
            "gumbel_ce, seesaw)."
        ) from e
    check_num_classes(cfg, stats)
    return stats


def check_num_classes(cfg, stats: ClassStats) -> None:
    """Raises ValueError, naming the key to change, when the config's K differs from the data's."""
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    if stats.num_classes != num_classes:
        raise ValueError(
            f"MODEL.ROI_HEADS.NUM_CLASSES is {num_classes} but the training dataset(s) "
            f"{list(cfg.DATASETS.TRAIN)} have {stats.num_classes} classes: set "
            f"MODEL.ROI_HEADS.NUM_CLASSES {stats.num_classes}."
        )


def positive_counts(counts) -> torch.Tensor:
    """Per-class counts as float64, clamped to at least 1 (ours: a class absent from training
    would otherwise give an infinite weight or logit shift)."""
    return torch.as_tensor(np.asarray(counts, dtype=np.float64)).clamp(min=1.0)


def tail_classes(image_frequency, threshold: float, loss_name: str) -> torch.Tensor:
    """T_j = 1[f_j < lambda] as a float (K,) tensor; logs which classes are tail, once per loss."""
    tail = torch.as_tensor(np.asarray(image_frequency, dtype=np.float64) < threshold)
    ids = tail.nonzero().squeeze(1).tolist()
    logger.info(
        f"{loss_name}: lambda = {threshold} marks {len(ids)} of {len(tail)} classes as tail "
        f"({100.0 * len(ids) / max(len(tail), 1):.1f}%), contiguous ids: {ids}"
    )
    return tail.float()

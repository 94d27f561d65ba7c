"""The interface every box-classification loss implements, and what several losses share.

Shape shorthand in lt_det.losses:

    R: number of RoIs of one training step (all images concatenated; foreground + background)
    K: number of foreground classes (LVIS v1: 1203)
    gt_classes: (R,) int64 labels in [0, K]; [0, K) are foreground classes and K is background
    logits: (R, L) with L = loss.num_logits(K) (K + 1 for detectron2's layout)
    y: (R, K) float one-hot targets, y_ij = 1[gt_i = j] (a background RoI has an all-zero row)
    scores: (R, K + 1) probabilities whose last column is background (fast_rcnn_inference drops it)
"""
import logging
from abc import ABCMeta, abstractmethod
from typing import Optional

import numpy as np
import torch
from torch import nn

from lt_det.data.class_stats import ClassStats, get_class_stats

from .functional import BINARY_ACTIVATIONS, binary_probs, prior_bias

logger = logging.getLogger(__name__)

IMPLEMENTATIONS = ("auto", "fused", "reference")


class LTLoss(nn.Module, metaclass=ABCMeta):
    """A box-classification loss that also owns its logit layout and test-time scores.

    Subclasses implement :meth:`loss` (the method's formula in plain PyTorch) and :meth:`scores`,
    and override :meth:`num_logits` / :meth:`init_classifier` / :meth:`classifier_rows` when they
    differ from detectron2's (K + 1 logits, class j's row is row j, weights N(0, 0.01), bias 0).
    Their ``__init__`` is ``@configurable`` with a ``from_config(cls, cfg)`` classmethod (which may
    take ``class_stats``, the training statistics read once per model build), so
    ``build_loss(cfg)`` can construct any registered loss; :meth:`add_config` declares the
    loss's own config keys.

    A loss may add :meth:`fused_loss`, the same formula on the fused kernels of
    :mod:`lt_det.losses.fused`; ``implementation`` chooses: "fused", "reference" (``loss``), or
    "auto" (fused on CPU, where it is measured and tested; the reference on other devices until
    the fused path is validated there). Set by ``MODEL.LT_LOSS.IMPLEMENTATION``.
    """

    implementation = "auto"

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes

    @classmethod
    def add_config(cls, cfg) -> None:
        """Declare this loss's keys (under cfg.MODEL.LT_LOSS), each commented; none by default."""

    def num_logits(self, num_classes: int) -> int:
        """Number of classifier outputs for ``num_classes`` foreground classes."""
        return num_classes + 1

    def init_classifier(self, linear: nn.Linear) -> None:
        """Initialise the classifier layer (detectron2's FastRCNNOutputLayers init by default)."""
        nn.init.normal_(linear.weight, std=0.01)
        nn.init.constant_(linear.bias, 0.0)

    def classifier_rows(self) -> torch.Tensor:
        """(K,) int64: the classifier row (logit column) of each foreground class, for
        τ-normalisation, LWS and weight-norm plots; the other rows (background, objectness, BAGS's
        "others") belong to no class."""
        return torch.arange(self.num_classes)

    def forward(self, logits: torch.Tensor, gt_classes: torch.Tensor, **extras) -> torch.Tensor:
        """Training loss (scalar) of (R, L) logits and (R,) labels in [0, K].

        ``extras`` carries whatever the caller knows about the RoIs (the predictor passes
        ``proposals``: list[Instances] of the step); a loss reads what it needs and ignores the rest.
        An empty batch gives a zero that is still connected to ``logits``. Losses compute in fp32,
        whatever the caller's autocast state.
        """
        if gt_classes.numel() == 0:
            return logits.sum() * 0.0
        logits = logits.float()
        with torch.autocast(logits.device.type, enabled=False):
            if self.uses_fused(logits.device):
                return self.fused_loss(logits, gt_classes, **extras)
            return self.loss(logits, gt_classes, **extras)

    def uses_fused(self, device: torch.device) -> bool:
        """Whether :meth:`forward` on ``device`` runs :meth:`fused_loss` (see ``implementation``)."""
        if self.implementation not in IMPLEMENTATIONS:
            raise ValueError(f"Unknown loss implementation '{self.implementation}' (MODEL.LT_LOSS.IMPLEMENTATION); "
                             f"expected one of {IMPLEMENTATIONS}")
        wanted = self.implementation == "fused" or (self.implementation == "auto" and device.type == "cpu")
        return wanted and self.has_fused_path()

    @classmethod
    def has_fused_path(cls) -> bool:
        """Whether this loss implements :meth:`fused_loss`."""
        return cls.fused_loss is not LTLoss.fused_loss

    @abstractmethod
    def loss(self, logits: torch.Tensor, gt_classes: torch.Tensor, **extras) -> torch.Tensor:
        """The reference loss of a non-empty batch: (R, L) fp32 logits, (R,) labels -> scalar."""

    def fused_loss(self, logits: torch.Tensor, gt_classes: torch.Tensor, **extras) -> torch.Tensor:
        """The same loss on the fused kernels (optional; equal to :meth:`loss`, gradients included)."""
        raise NotImplementedError

    @abstractmethod
    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Test-time class probabilities: (R, L) logits -> (R, K + 1), background last."""

    #: What :meth:`scores` returns, for the post-hoc calibration stage (``lt_det.calibration``):
    #: "softmax" when the K class scores and the background share one distribution (they sum to at
    #: most 1, the classes compete with the background); else the activation ("sigmoid",
    #: "gumbel") that turns each class's own logit into its independent score.
    score_activation: str = "softmax"

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
            raise ValueError(f"Unknown activation '{activation}'; expected one of {list(BINARY_ACTIVATIONS)}")
        self.activation = activation
        self.score_activation = activation
        self.prior_prob = prior_prob
        self.background_logit = background_logit

    def num_logits(self, num_classes: int) -> int:
        return num_classes + int(self.background_logit)

    def init_classifier(self, linear: nn.Linear) -> None:
        if self.activation == "gumbel":
            nn.init.constant_(linear.weight, 0.001)
            nn.init.constant_(linear.bias, -2.0)
            return
        nn.init.normal_(linear.weight, std=0.01)
        nn.init.constant_(linear.bias, prior_bias(self.prior_prob) if self.prior_prob > 0 else 0.0)

    def class_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """(R, L) -> the (R, K) foreground-class logits."""
        return logits[:, : self.num_classes]

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        probs = binary_probs(logits, self.activation)
        return probs if self.background_logit else append_background(probs)

    def predict_classes(self, logits: torch.Tensor) -> torch.Tensor:
        """Most probable class, or background when no class reaches probability 0.5."""
        best_prob, best = binary_probs(self.class_logits(logits), self.activation).max(dim=1)
        return torch.where(best_prob >= 0.5, best, torch.full_like(best, self.num_classes))


def class_stats_for(cfg, loss_name: str, class_stats: Optional[ClassStats] = None) -> ClassStats:
    """``class_stats`` (read by the caller once per model build) or else the statistics of
    cfg.DATASETS.TRAIN, checked against MODEL.ROI_HEADS.NUM_CLASSES.

    Raises:
        KeyError: the training dataset has no class statistics (says how to add them).
        ValueError: the config's class count differs from the dataset's (says what to set).
    """
    if class_stats is not None:
        check_num_classes(cfg, class_stats)
        return class_stats
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


def tail_frequency(cfg, stats: ClassStats) -> np.ndarray:
    """(K,) f_j = image_count_j / M, the frequency TAIL_THRESHOLD is compared with, M as
    MODEL.LT_LOSS.TAIL_FREQUENCY_IMAGES says ("annotated" or "all" training images)."""
    images = cfg.MODEL.LT_LOSS.TAIL_FREQUENCY_IMAGES
    try:
        return stats.image_frequency_over(images)
    except (KeyError, ValueError) as e:
        raise type(e)(f"MODEL.LT_LOSS.TAIL_FREQUENCY_IMAGES {images!r} with DATASETS.TRAIN "
                      f"{list(cfg.DATASETS.TRAIN)}: {e.args[0]}") from e


def tail_classes(image_frequency, threshold: float, loss_name: str) -> torch.Tensor:
    """T_j = 1[f_j < lambda] as a float (K,) tensor; logs which classes are tail, once per loss,
    with EQL's tail ratio TR(lambda) = sum_j T_j N_j / sum_j N_j (N_j: images of class j, so
    f_j's weights: the share of the class-image pairs that belong to tail classes)."""
    frequency = np.asarray(image_frequency, dtype=np.float64)
    tail = torch.as_tensor(frequency < threshold)
    ids = tail.nonzero().squeeze(1).tolist()
    tail_ratio = float(frequency[tail.numpy()].sum() / frequency.sum()) if frequency.sum() > 0 else float("nan")
    logger.info(
        f"{loss_name}: lambda = {threshold} marks {len(ids)} of {len(tail)} classes as tail "
        f"({100.0 * len(ids) / max(len(tail), 1):.1f}%; tail ratio TR = {100.0 * tail_ratio:.2f}%), "
        f"contiguous ids: {ids}"
    )
    return tail.float()

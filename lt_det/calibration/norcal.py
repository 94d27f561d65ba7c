"""NorCal, normalised calibration (Pan et al., "On Model Calibration for Long-Tailed Object
Detection and Instance Segmentation", NeurIPS 2021; released code: tydpan/NorCal, detectron2).

Each class's score is divided by a power of its training image count N_c; the background is not
re-scaled; the row is normalised again:

    a_c = N_c^γ                                          (WEIGHTING "power", the paper's)
    p̃_c = (p_c / a_c) / (Σ_k p_k / a_k + p_bg),  p̃_bg = p_bg / (Σ_k p_k / a_k + p_bg)

For a plain softmax this equals the released code's default ("exps": exp of the logits, class
columns times 1 / a_c, divided by the row sum) and its "probs" mode; RENORM: False is the paper's
ablation without the normalisation. The released code also offers class-balanced weights
``1 / a_c = (1 - γ) / (1 - γ^N_c)`` (its METHOD "cb", here WEIGHTING "effective_number", γ in
(0, 1)). N_c counts training images (the released code reads LVIS's ``image_count``).

The released code handles softmax models only. For independent class scores (sigmoid, Gumbel)
this module divides each class score by a_c and normalises nothing (there is no row
distribution); that is lt_det's extension. γ = 0 is the identity for "power" (no calibration
is built then).
"""
import torch

from detectron2.config import CfgNode as CN

from lt_det.data.class_stats import ClassStats

from .base import Calibration, reweight_distribution, with_class_scores
from .registry import register_calibration

__all__ = ["NorCal", "norcal_weights"]

WEIGHTINGS = ("power", "effective_number")


def norcal_weights(image_count: torch.Tensor, gamma: float, weighting: str = "power") -> torch.Tensor:
    """(K,) float64 ``1 / a_c``: ``N_c^(-γ)``, or ``(1 - γ) / (1 - γ^N_c)``; a class with no
    training image counts as 1 image."""
    counts = torch.as_tensor(image_count, dtype=torch.float64).clamp(min=1.0)
    if weighting == "power":
        return counts.pow(-gamma)
    if weighting == "effective_number":
        if not 0.0 < gamma < 1.0:
            raise ValueError(f"TEST.CALIBRATION.NORCAL.GAMMA is {gamma}; the effective-number weighting needs 0 < γ < 1")
        return (1.0 - gamma) / (1.0 - gamma ** counts)
    raise ValueError(f"Unknown weighting '{weighting}' (TEST.CALIBRATION.NORCAL.WEIGHTING); expected one of {WEIGHTINGS}")


@register_calibration("norcal")
class NorCal(Calibration):
    sweep_key = "GAMMA"

    def __init__(self, weights: torch.Tensor, renorm: bool = True):
        """
        Args:
            weights: (K,) ``1 / a_c``, from :func:`norcal_weights`.
            renorm: normalise each row again (one-distribution scores only).
        """
        super().__init__()
        self.renorm = renorm
        self.register_buffer("weights", torch.as_tensor(weights).float(), persistent=False)  # (K,) 1 / a_c

    @classmethod
    def add_config(cls, node: CN) -> None:
        node.GAMMA = 0.0  # γ of a_c = N_c^γ (released default 0 = no calibration: choose it on held-out data)
        node.WEIGHTING = "power"  # "power": N_c^γ (the paper's); "effective_number": released "cb"
        node.RENORM = True  # normalise over the classes and the background (the released default)

    @classmethod
    def is_identity(cls, node: CN) -> bool:
        return node.GAMMA == 0 and node.WEIGHTING == "power"

    @classmethod
    def from_config(cls, cfg, class_stats: ClassStats) -> "NorCal":
        node = cfg.TEST.CALIBRATION.NORCAL
        return cls(norcal_weights(class_stats.tensor("image_count", dtype=torch.float64), node.GAMMA, node.WEIGHTING),
                   renorm=node.RENORM)

    def forward(self, scores, logits, loss, classifier):
        if self.is_distribution(loss):
            return reweight_distribution(scores, self.weights, normalize=self.renorm)
        num_classes = self.weights.shape[0]
        return with_class_scores(scores, scores[:, :num_classes].float() * self.weights)

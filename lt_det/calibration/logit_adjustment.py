"""Post-hoc logit adjustment (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021,
eq. 9): subtract τ · log π_c from each class's logit, π the training label prior.

    π_c = n_c / Σ_k n_k             n_c: training instances of class c (or images, PRIOR: "image")

* one distribution: ``p̃_c ∝ p_c π_c^(-τ)``, the background's logit unchanged (base module's rule);
  for a plain softmax that is ``softmax(z_c - τ log π_c)`` with ``z_bg`` as it was;
* independent scores: ``p̃_c = act(z_c - τ log π_c)`` with ``z_c = act⁻¹(p_c)``.

τ = 0 is the identity. Menon et al. adjust every label; a detector's background has no prior among
the annotations, so it is left as it is, as NorCal and FRACAL leave it.
"""
import torch

from detectron2.config import CfgNode as CN

from lt_det.data.class_stats import ClassStats

from .base import Calibration, reweight_distribution, shifted_class_scores, with_class_scores
from .registry import register_calibration

__all__ = ["LogitAdjustment"]

PRIORS = ("instance", "image")


def label_prior(class_stats: ClassStats, prior: str) -> torch.Tensor:
    """(K,) float64 π_c = n_c / Σ n from instance or image counts; a class with no training count
    gets a count of 1 (its log prior would be -inf)."""
    if prior not in PRIORS:
        raise ValueError(f"Unknown prior '{prior}' (TEST.CALIBRATION.LOGIT_ADJUSTMENT.PRIOR); expected one of {PRIORS}")
    counts = class_stats.tensor("instance_count" if prior == "instance" else "image_count", dtype=torch.float64)
    counts = counts.clamp(min=1.0)
    return counts / counts.sum()


@register_calibration("logit_adjustment")
class LogitAdjustment(Calibration):
    sweep_key = "TAU"

    def __init__(self, prior: torch.Tensor, tau: float = 1.0):
        """
        Args:
            prior: (K,) the training label prior π.
            tau: τ, the adjustment's strength.
        """
        super().__init__()
        self.tau = tau
        log_prior = torch.as_tensor(prior, dtype=torch.float64).log()
        self.register_buffer("log_prior", log_prior.float(), persistent=False)  # (K,) log π_c

    @classmethod
    def add_config(cls, node: CN) -> None:
        node.TAU = 1.0  # τ of z_c - τ log π_c (Menon et al.: τ = 1 is the Bayes-optimal balanced rule)
        node.PRIOR = "instance"  # π from "instance" (annotations per class) or "image" counts

    @classmethod
    def is_identity(cls, node: CN) -> bool:
        return node.TAU == 0

    @classmethod
    def from_config(cls, cfg, class_stats: ClassStats) -> "LogitAdjustment":
        node = cfg.TEST.CALIBRATION.LOGIT_ADJUSTMENT
        return cls(label_prior(class_stats, node.PRIOR), tau=node.TAU)

    def forward(self, scores, logits, loss, classifier):
        if self.is_distribution(loss):
            return reweight_distribution(scores, torch.exp(-self.tau * self.log_prior))
        return with_class_scores(scores, shifted_class_scores(scores, -self.tau * self.log_prior, loss.score_activation))

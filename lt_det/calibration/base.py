"""What every post-hoc calibration shares: its call contract and the two ways scores are re-scaled.

Shorthand: R RoIs, K foreground classes, L classifier logits (the loss decides L). Scores are the
loss's test scores (R, K + 1), background last (``LTLoss.scores``).

A calibration re-scores a trained model's RoIs before detectron2's score threshold, per-class NMS
and top-k; it trains nothing. Two kinds of scores (``LTLoss.score_activation``):

* **one distribution** ("softmax": softmax CE, Balanced Softmax, BAGS, Seesaw, ...). A method that
  multiplies class c's score by ``w_c`` keeps the background's as it is and normalises the row
  again (NorCal's "separately handling the background class and normalizing"):

      p̃_c = w_c p_c / (Σ_k w_k p_k + p_bg),        p̃_bg = p_bg / (Σ_k w_k p_k + p_bg)

  For a plain softmax this is the softmax of the logits with ``log w_c`` added to every class logit
  and 0 to the background's, which is how the released codes write it.
* **independent class scores** ("sigmoid", "gumbel": sigmoid CE, EQL, Federated, GOL, ...). Each
  method says what it does with ``z_c = act⁻¹(p_c)``, the logit of class c's score; there is no
  row to normalise. For the losses whose class score is multiplied by an objectness term (EQLv2
  with ``TEST_WITH_OBJ``, ECM), ``z_c`` is the logit of that product.
"""
from abc import ABCMeta, abstractmethod

import torch
from torch import nn

from lt_det.losses.base import LTLoss

__all__ = ["Calibration", "reweight_distribution", "shifted_class_scores", "with_class_scores"]


class Calibration(nn.Module, metaclass=ABCMeta):
    """Re-scores (R, K + 1) test scores; its per-class constants are non-persistent buffers (they
    follow the model to its device and stay out of checkpoints)."""

    @abstractmethod
    def forward(self, scores: torch.Tensor, logits: torch.Tensor, loss: LTLoss, classifier: nn.Module) -> torch.Tensor:
        """
        Args:
            scores: (R, K + 1) the loss's test scores of ``logits``, background last.
            logits: (R, L) the classifier's output.
            loss: the model's loss (its ``score_activation``, ``scores``, ``classifier_rows``).
            classifier: the layer that made ``logits`` (``box_predictor.cls_score``).

        Returns:
            (R, K + 1) calibrated scores, background last, in ``scores``' dtype.
        """

    #: The key (in the method's config node) that ``tools/calibration_sweep.py`` sweeps by default.
    sweep_key: str = ""
    #: Whether ``from_config`` reads the training set's class statistics.
    needs_class_stats: bool = True
    #: Whether ``forward`` re-derives logits from the classifier's weights (which do not know a
    #: scaling of the logits after the classifier, such as the Gumbel temperature).
    reads_classifier: bool = False

    @classmethod
    def is_identity(cls, node) -> bool:
        """Whether the settings in ``node`` (the method's config node) leave every score as it is;
        no calibration is built then, so the detections stay bit-equal to the uncalibrated ones."""
        return False

    @staticmethod
    def is_distribution(loss: LTLoss) -> bool:
        """Whether ``loss``'s scores are one distribution over the classes and the background."""
        return loss.score_activation == "softmax"


def reweight_distribution(scores: torch.Tensor, weights: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """(R, K + 1) scores, (K,) class weights w -> (R, K + 1): ``p̃_c ∝ w_c p_c``, ``p̃_bg ∝ p_bg``,
    each row divided by its new sum (or, ``normalize=False``, not divided)."""
    probs = scores.float()
    num_classes = weights.shape[0]
    out = torch.cat([probs[:, :num_classes] * weights, probs[:, num_classes:]], dim=1)
    if normalize:
        out = out / out.sum(dim=1, keepdim=True).clamp(min=torch.finfo(out.dtype).tiny)
    return out.to(scores.dtype)


def shifted_class_scores(scores: torch.Tensor, shift: torch.Tensor, activation: str) -> torch.Tensor:
    """(R, K + 1) independent scores, (K,) shift s -> (R, K) ``act(z_c + s_c)`` with
    ``z_c = act⁻¹(p_c)``, in closed form (no logit is formed, so no score is clamped):

    * sigmoid: ``σ(z + s) = p e^s / (p e^s + 1 - p)``;
    * Gumbel (``p = exp(-exp(-z))``): ``exp(-exp(-z - s)) = p^(e^-s)``.
    """
    num_classes = shift.shape[0]
    p = scores[:, :num_classes].float()
    if activation == "sigmoid":
        scaled = p * shift.exp().float()
        return scaled / (scaled + (1.0 - p))
    if activation == "gumbel":
        return p.pow((-shift).exp().float())
    raise ValueError(f"Unknown score activation '{activation}'; calibrations know 'softmax', 'sigmoid' and "
                     "'gumbel' (LTLoss.score_activation)")


def with_class_scores(scores: torch.Tensor, class_scores: torch.Tensor) -> torch.Tensor:
    """(R, K + 1) ``scores`` with its first K columns replaced by (R, K) ``class_scores``."""
    num_classes = class_scores.shape[1]
    return torch.cat([class_scores.to(scores.dtype), scores[:, num_classes:]], dim=1)

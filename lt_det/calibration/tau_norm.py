"""τ-normalisation as a calibration at inference (Kang et al., "Decoupling Representation and
Classifier for Long-Tailed Recognition", ICLR 2020), without rewriting the checkpoint
(``tools/tau_norm.py`` writes a τ-normalised checkpoint instead; the two give the same scores
except for the background rule below).

With the classifier ``z_c = w_c · x + b_c``, the τ-normalised logit of each foreground class row
is ``z̃_c = (w_c / ||w_c||^τ) · x + b_c = (z_c - b_c) / ||w_c||^τ + b_c``; the other rows
(background, objectness, BAGS's "others") and every bias are unchanged. An LWS classifier's
effective row is ``s_c w_c`` (and, when it scales the whole logit, its bias ``s_c b_c``). The loss
then turns z̃ into scores as it turns z.

Background rule (BAGS's released τ-norm evaluation): a RoI that the original model calls
background (``LTLoss.predict_classes`` of the original logits is K) keeps the original scores.
For independent class scores (sigmoid, Gumbel, EQLv2, ...) ``predict_classes`` calls a RoI
background when no class reaches probability 1/2 (lt_det's extension of the rule, which BAGS
wrote for its softmax groups): that is most RoIs of such a detector, so the rule leaves most of
their scores as they were and τ-normalisation changes such a model much less than a softmax one.
"""
import torch
from torch import nn

from detectron2.config import CfgNode as CN

from lt_det.data.class_stats import ClassStats
from lt_det.modeling.cosine import CosineLinear
from lt_det.modeling.disalign import DisAlignLinear
from lt_det.modeling.lws import LWSLinear

from .base import Calibration
from .registry import register_calibration

__all__ = ["TauNormalization", "effective_classifier"]


def effective_classifier(classifier: nn.Module):
    """(L, D) weight and (L,) bias with which ``classifier`` computes ``z = W x + b``.

    Raises:
        TypeError: a cosine classifier (its rows are unit-norm: τ-normalisation changes nothing),
            a DisAlign classifier, or a layer that is not an ``nn.Linear``.
    """
    if isinstance(classifier, CosineLinear):
        raise TypeError("τ-normalisation of a cosine classifier changes nothing: its rows are already unit-norm")
    if isinstance(classifier, DisAlignLinear):
        raise TypeError("τ-normalisation of a DisAlign classifier is not defined: its logits are not linear in x")
    if not isinstance(classifier, nn.Linear):
        raise TypeError(f"τ-normalisation needs an nn.Linear classifier, found {type(classifier).__name__}")
    weight = classifier.weight
    bias = classifier.bias if classifier.bias is not None else weight.new_zeros(weight.shape[0])
    if isinstance(classifier, LWSLinear):
        scale = classifier.full_scale()
        weight = weight * scale[:, None]
        if classifier.scale_bias:
            bias = bias * scale
    return weight, bias


@register_calibration("tau_norm")
class TauNormalization(Calibration):
    sweep_key = "TAU"
    needs_class_stats = False  # it reads the classifier's weights only
    reads_classifier = True

    def __init__(self, tau: float = 1.0):
        """``tau``: τ of ``w_c / ||w_c||^τ``; 0 is the identity."""
        super().__init__()
        self.tau = tau

    @classmethod
    def add_config(cls, node: CN) -> None:
        node.TAU = 1.0  # τ of w_c / ||w_c||₂^τ (Kang et al.'s default; choose it on held-out data)

    @classmethod
    def is_identity(cls, node: CN) -> bool:
        return node.TAU == 0

    @classmethod
    def from_config(cls, cfg, class_stats: ClassStats) -> "TauNormalization":
        return cls(tau=cfg.TEST.CALIBRATION.TAU_NORM.TAU)

    @torch.no_grad()
    def forward(self, scores, logits, loss, classifier):
        weight, bias = effective_classifier(classifier)
        rows = loss.classifier_rows().to(logits.device)
        norms = weight[rows].float().norm(dim=1).clamp(min=torch.finfo(torch.float32).tiny)
        b = bias[rows].float()
        normalized = logits.float().clone()
        normalized[:, rows] = (normalized[:, rows] - b) / norms.pow(self.tau) + b
        out = loss.scores(normalized).to(scores.dtype)
        background = loss.predict_classes(logits) == loss.num_classes
        return torch.where(background[:, None], scores, out)

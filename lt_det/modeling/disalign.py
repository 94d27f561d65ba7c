"""DisAlign's adaptive calibration of a frozen classifier (Zhang et al., "Distribution Alignment:
A Unified Framework for Long-tail Visual Recognition", CVPR 2021; released code:
Megvii-BaseDetection/DisAlign with cvpods' ``DisAlignFastRCNNOutputLayers``).

Shorthand: R RoIs, D input features, L logits of the classifier, C foreground classes whose rows
``class_rows`` (C,) the loss names (``LTLoss.classifier_rows()``).

On the frozen stage-1 classifier ``z = W x + b`` it learns a magnitude α_c and a margin β_c per
foreground class and a confidence per RoI, σ(x) = sigmoid(v · x + u):

    s_c = σ(x) (α_c z_c + β_c) + (1 - σ(x)) z_c      for each foreground class c
    s_j = z_j                                          for the other rows (background: not calibrated)

Initialisation as released: α = 1, β = 0 (so s = z at the start), v ~ N(0, 0.01²), u = 0. The
same calibrated logits are used at test time. Trained in stage 2 with the GRW loss
(:mod:`lt_det.losses.grw`), everything else frozen (``DECOUPLED.DISALIGN``).
"""
import torch
import torch.nn.functional as F
from torch import nn

from .lws import replace_linear
from .tau_norm import Rows, check_class_rows

__all__ = ["DisAlignLinear", "replace_with_disalign"]


class DisAlignLinear(nn.Linear):
    """An ``nn.Linear`` (D -> L) with DisAlign's calibration of the C outputs ``class_rows``.

    It keeps ``weight`` and ``bias`` under their usual names, so a stage-1 checkpoint of the plain
    linear layer loads into it unchanged; ``logit_scale`` (C,), ``logit_bias`` (C,) and
    ``confidence`` (a D -> 1 linear layer) are new.
    """

    def __init__(self, in_features: int, out_features: int, *, class_rows: Rows, bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        self.register_buffer("class_rows", check_class_rows(class_rows, out_features), persistent=False)
        num_classes = len(self.class_rows)
        self.logit_scale = nn.Parameter(torch.ones(num_classes))  # α_c
        self.logit_bias = nn.Parameter(torch.zeros(num_classes))  # β_c
        self.confidence = nn.Linear(in_features, 1)  # σ(x) = sigmoid(v · x + u)
        nn.init.normal_(self.confidence.weight, std=0.01)
        nn.init.constant_(self.confidence.bias, 0.0)

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, class_rows: Rows) -> "DisAlignLinear":
        """Wraps ``linear``'s own weight and bias tensors (shared, not copied)."""
        layer = cls(linear.in_features, linear.out_features, class_rows=class_rows, bias=linear.bias is not None)
        layer.weight = linear.weight
        layer.bias = linear.bias
        return layer.to(linear.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(R, D) -> (R, L) calibrated logits."""
        z = F.linear(x, self.weight, self.bias)
        sigma = torch.sigmoid(self.confidence(x))  # (R, 1)
        rows = self.class_rows
        z_c = z[:, rows]
        calibrated = sigma * (self.logit_scale * z_c + self.logit_bias) + (1.0 - sigma) * z_c
        return z.index_copy(1, rows, calibrated)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_classes={self.logit_scale.numel()}"


def replace_with_disalign(model: nn.Module, classifier_name: str, *, class_rows: Rows) -> DisAlignLinear:
    """Replaces the ``nn.Linear`` at dotted path ``classifier_name`` in ``model`` by a
    :class:`DisAlignLinear` sharing its tensors; returns the new module (the released cosine
    variant is not implemented: a cosine classifier is refused)."""
    return replace_linear(model, classifier_name, lambda linear: DisAlignLinear.from_linear(linear, class_rows=class_rows),
                          "DisAlign")

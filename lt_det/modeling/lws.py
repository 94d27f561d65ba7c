"""Learnable weight scaling, LWS (Kang et al., "Decoupling Representation and Classifier for
Long-Tailed Recognition", ICLR 2020).

Shorthand: D = input feature size, L = number of logits of the classifier (the loss decides it:
C + 1 for softmax, C for sigmoid without background, ...), C = number of foreground classes, whose
rows ``class_rows`` (C,) the loss names (``LTLoss.classifier_rows()``; the first C rows for most
losses, not for BAGS).

LWS keeps the stage-1 classifier ``z = W x + b`` frozen and learns one scale ``s_c`` per
foreground class (init 1); the extra rows (background, objectness) keep scale 1.

* weight rows only (eqlv2's detection variant, the default): ``z_c = s_c (w_c · x) + b_c``
* whole logit (Kang et al.'s classification variant): ``z_c = s_c (w_c · x + b_c)``
"""
import torch
import torch.nn.functional as F
from torch import nn

from .tau_norm import Rows, check_class_rows

__all__ = ["LWSLinear", "replace_linear", "replace_with_lws"]


class LWSLinear(nn.Linear):
    """An ``nn.Linear`` (L outputs) with a learnable scale for the C outputs ``class_rows``.

    It keeps ``weight`` and ``bias`` under their usual names, so a stage-1 checkpoint of the plain
    linear layer loads into it unchanged; ``scale`` (C,) is the only new tensor.
    """

    def __init__(self, in_features: int, out_features: int, *, class_rows: Rows, scale_bias: bool = False,
                 bias: bool = True):
        """
        Args:
            class_rows: (C,) the outputs that get a scale, one per foreground class.
            scale_bias: scale the whole logit (True) or the weight rows only (False).
        """
        super().__init__(in_features, out_features, bias=bias)
        self.scale_bias = scale_bias
        self.register_buffer("class_rows", check_class_rows(class_rows, out_features), persistent=False)
        self.scale = nn.Parameter(torch.ones(len(self.class_rows)))

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, class_rows: Rows, scale_bias: bool = False) -> "LWSLinear":
        """Wraps ``linear``'s own weight and bias tensors (shared, not copied) with scales of 1."""
        lws = cls(linear.in_features, linear.out_features, class_rows=class_rows, scale_bias=scale_bias,
                  bias=linear.bias is not None)
        lws.weight = linear.weight
        lws.bias = linear.bias
        return lws.to(linear.weight.device)

    def full_scale(self) -> torch.Tensor:
        """(L,) the scales, with 1 for the rows of no class."""
        return self.scale.new_ones(self.out_features).scatter(0, self.class_rows, self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(R, D) -> (R, L)."""
        s = self.full_scale()
        if self.scale_bias:
            return F.linear(x, self.weight, self.bias) * s
        return F.linear(x, self.weight * s[:, None], self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_classes={self.scale.numel()}, scale_bias={self.scale_bias}"


def replace_linear(model: nn.Module, classifier_name: str, wrap, method: str) -> nn.Module:
    """Replaces the ``nn.Linear`` at dotted path ``classifier_name`` in ``model`` by
    ``wrap(linear)``; returns the new module. ``method`` names the caller in the error raised when
    the layer is not a plain ``nn.Linear`` (a cosine classifier, or already wrapped)."""
    parent_name, _, child_name = classifier_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    linear = getattr(parent, child_name, None)
    if type(linear) is not nn.Linear:
        raise TypeError(f"{method} needs '{classifier_name}' to be an nn.Linear, found {type(linear).__name__}")
    layer = wrap(linear)
    setattr(parent, child_name, layer)
    return layer


def replace_with_lws(model: nn.Module, classifier_name: str, *, class_rows: Rows, scale_bias: bool = False) -> LWSLinear:
    """Replaces the ``nn.Linear`` at dotted path ``classifier_name`` in ``model`` by an
    :class:`LWSLinear` sharing its tensors; returns the new module."""
    return replace_linear(model, classifier_name,
                          lambda linear: LWSLinear.from_linear(linear, class_rows=class_rows, scale_bias=scale_bias),
                          "LWS")

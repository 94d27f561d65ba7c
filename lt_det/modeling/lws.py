"""Learnable weight scaling, LWS (Kang et al. 2020; SPEC §8).

Shorthand: D = input feature size, L = number of logits of the classifier (the loss decides it:
C + 1 for softmax, C for sigmoid without background, ...), C = number of foreground classes, whose
logits are the first C rows (the convention τ-normalisation uses too).

LWS keeps the stage-1 classifier ``z = W x + b`` frozen and learns one scale ``s_c`` per
foreground class (init 1); the extra rows (background, objectness) keep scale 1.

* weight rows only (eqlv2's detection variant, the default): ``z_c = s_c (w_c · x) + b_c``
* whole logit (Kang et al.'s classification variant): ``z_c = s_c (w_c · x + b_c)``
"""
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LWSLinear", "replace_with_lws"]


class LWSLinear(nn.Linear):
    """An ``nn.Linear`` (L outputs) with a learnable scale for its first C outputs.

    It keeps ``weight`` and ``bias`` under their usual names, so a stage-1 checkpoint of the plain
    linear layer loads into it unchanged; ``scale`` (C,) is the only new tensor.
    """

    def __init__(self, in_features: int, out_features: int, *, num_classes: int, scale_bias: bool = False, bias: bool = True):
        """
        Args:
            num_classes: C, the number of leading outputs that get a scale (C <= L).
            scale_bias: scale the whole logit (True) or the weight rows only (False).
        """
        super().__init__(in_features, out_features, bias=bias)
        if not 0 < num_classes <= out_features:
            raise ValueError(f"LWS: num_classes must be in [1, {out_features}] (the logit count), got {num_classes}")
        self.scale_bias = scale_bias
        self.scale = nn.Parameter(torch.ones(num_classes))

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, num_classes: int, scale_bias: bool = False) -> "LWSLinear":
        """Wraps ``linear``'s own weight and bias tensors (shared, not copied) with scales of 1."""
        lws = cls(linear.in_features, linear.out_features, num_classes=num_classes, scale_bias=scale_bias, bias=linear.bias is not None)
        lws.weight = linear.weight
        lws.bias = linear.bias
        return lws.to(linear.weight.device)

    def full_scale(self) -> torch.Tensor:
        """(L,) the scales, with 1 for the rows after the first C."""
        extra = self.out_features - self.scale.numel()
        return torch.cat([self.scale, self.scale.new_ones(extra)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(R, D) -> (R, L)."""
        s = self.full_scale()
        if self.scale_bias:
            return F.linear(x, self.weight, self.bias) * s
        return F.linear(x, self.weight * s[:, None], self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_classes={self.scale.numel()}, scale_bias={self.scale_bias}"


def replace_with_lws(model: nn.Module, classifier_name: str, *, num_classes: int, scale_bias: bool = False) -> LWSLinear:
    """Replaces the ``nn.Linear`` at dotted path ``classifier_name`` in ``model`` by an
    :class:`LWSLinear` sharing its tensors; returns the new module."""
    parent_name, _, child_name = classifier_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    linear = getattr(parent, child_name, None)
    if type(linear) is not nn.Linear:
        raise TypeError(f"LWS needs '{classifier_name}' to be an nn.Linear, found {type(linear).__name__}")
    lws = LWSLinear.from_linear(linear, num_classes=num_classes, scale_bias=scale_bias)
    setattr(parent, child_name, lws)
    return lws

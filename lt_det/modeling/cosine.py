"""Normalised (cosine) predictors with a temperature, as mmdetection's ``NormedLinear`` /
``NormedConv2d`` (used by GOL's mask head and mmdetection's Seesaw LVIS config, t = 20).

Output ``t * (x / ||x||) . (w_k / ||w_k||) + b_k``: features normalised over channels, weight
rows over their inputs, each norm plus eps = 1e-6 (mmdetection's).
"""
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["CosineLinear", "CosineConv2d"]

_EPS = 1e-6


def _unit_rows(weight: torch.Tensor) -> torch.Tensor:
    """Each output row (dim 0) of a weight divided by its L2 norm (+ eps)."""
    return weight / (weight.flatten(1).norm(dim=1).view(-1, *([1] * (weight.dim() - 1))) + _EPS)


class CosineLinear(nn.Linear):
    """(R, C) -> (R, K) cosine classifier; a drop-in ``nn.Linear`` (same parameters)."""

    def __init__(self, in_features: int, out_features: int, temperature: float):
        super().__init__(in_features, out_features)
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / (x.norm(dim=1, keepdim=True) + _EPS) * self.temperature
        return F.linear(x, _unit_rows(self.weight), self.bias)


class CosineConv2d(nn.Conv2d):
    """(R, C, H, W) -> (R, K, H, W) 1x1 cosine conv, normalised per pixel over channels."""

    def __init__(self, in_channels: int, out_channels: int, temperature: float):
        super().__init__(in_channels, out_channels, kernel_size=1)
        self.temperature = temperature

    def normalized_input(self, x: torch.Tensor) -> torch.Tensor:
        return x / (x.norm(dim=1, keepdim=True) + _EPS) * self.temperature

    def normalized_weight(self) -> torch.Tensor:
        return _unit_rows(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.normalized_input(x), self.normalized_weight(), self.bias)

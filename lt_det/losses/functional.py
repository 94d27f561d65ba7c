"""Plain-PyTorch building blocks of the losses' reference implementations (autograd, elementwise).

Shapes: R RoIs, K columns; ``y`` is a float target of the same shape as the logits ``z``.
"""
import math

import torch
from torch.nn import functional as F

BINARY_ACTIVATIONS = ("sigmoid", "gumbel")
GUMBEL_TRAIN_CLAMP = (-4.0, 10.0)  # GOL's released training clamp of the logits


def prior_bias(prior_prob: float) -> float:
    """Bias b with sigmoid(b) = prior_prob, i.e. -log((1 - pi) / pi) (pi = 0.001 gives -6.9068)."""
    return -math.log((1.0 - prior_prob) / prior_prob)


def onehot_targets(gt_classes: torch.Tensor, num_columns: int) -> torch.Tensor:
    """(R,) labels in [0, K] -> (R, K) float y with ``y_ij = 1[gt_i = j]``; label K (background)
    gives an all-zero row."""
    return F.one_hot(gt_classes, num_columns + 1)[:, :num_columns].float()


def gumbel_cross_entropy(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """GOL's binary cross-entropy of the Gumbel CDF ``eta(x) = exp(-exp(-x))``, elementwise.

    Training clamps the logits, ``x = clamp(z, -4, 10)`` (zero gradient outside), and the loss is
    written in log space: ``-log eta(x) = exp(-x)`` and ``-log(1 - eta(x)) = -log(-expm1(-exp(-x)))``.
    (The released code takes ``F.binary_cross_entropy(eta(x), y)``: the same value, but its backward
    divides by ``max(eta (1 - eta), 1e-12)`` and nearly zeroes a positive's gradient below x = -3.3;
    this is the exact derivative.)
    """
    t = torch.exp(-z.clamp(*GUMBEL_TRAIN_CLAMP))
    return y * t - (1.0 - y) * torch.log(-torch.expm1(-t))


def binary_cross_entropy(z: torch.Tensor, y: torch.Tensor, activation: str = "sigmoid") -> torch.Tensor:
    """Elementwise binary cross-entropy of ``activation(z)`` against ``y``: "sigmoid" (stable
    ``binary_cross_entropy_with_logits``) or "gumbel" (:func:`gumbel_cross_entropy`)."""
    if activation == "sigmoid":
        return F.binary_cross_entropy_with_logits(z, y, reduction="none")
    if activation == "gumbel":
        return gumbel_cross_entropy(z, y)
    raise ValueError(f"Unknown activation '{activation}'; expected one of {BINARY_ACTIVATIONS}")


def binary_probs(z: torch.Tensor, activation: str = "sigmoid") -> torch.Tensor:
    """Test-time probability of each binary classifier: sigma(z), or the unclamped Gumbel CDF."""
    return torch.exp(-torch.exp(-z)) if activation == "gumbel" else torch.sigmoid(z)


def sigmoid_focal_loss(z: torch.Tensor, y: torch.Tensor, gamma: float = 2.0, alpha: float = 0.25) -> torch.Tensor:
    """Elementwise sigmoid focal loss ``alpha_t (1 - p_t)^gamma BCE(z, y)`` (Lin et al., ICCV 2017,
    eq. 5, as torchvision's ``sigmoid_focal_loss`` writes it); alpha < 0: no alpha_t."""
    p = torch.sigmoid(z)
    ce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return loss

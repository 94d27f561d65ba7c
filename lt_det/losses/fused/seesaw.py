"""Seesaw's class term, fused: the mitigation and compensation factors and the softmax CE in one
compiled pass over the foreground RoIs. Shapes: F foreground RoIs, K classes."""
import math

import torch

from .kernel import FusedKernel, PrecomputedGradient

SEESAW_SELF_SCORE_MIN = 1e-2  # mmdetection's eps on sigma_iy


def _seesaw_kernel(*, logits, labels, weights, log_counts, p, q):
    """(sum_i w_i CE(z_i + log M_i + log C_i, label_i) as float64, its gradient (F, K)).

    In log space, with y = label_i and j != y (both terms 0 at j = y, and detached):
    ``log M_ij = p min(0, log N_j - log N_y)`` and
    ``log C_ij = q max(0, log sigma_ij - log max(sigma_iy, 1e-2))`` with
    ``log sigma_ij = z_ij - logsumexp(z_i)``. The gradient is ``softmax(x_i) - onehot(y)``.
    """
    z = logits
    onehot = labels[:, None] == torch.arange(z.shape[1], device=z.device)
    top = z.amax(dim=1, keepdim=True)
    lse = torch.log(torch.exp(z - top).sum(dim=1, keepdim=True)) + top
    z_label = torch.where(onehot, z, 0.0).sum(dim=1, keepdim=True)
    log_self = (z_label - lse).clamp(min=math.log(SEESAW_SELF_SCORE_MIN))
    log_mitigation = p * (log_counts - log_counts[labels][:, None]).clamp(max=0.0)
    log_compensation = q * (z - lse - log_self).clamp(min=0.0)
    x = z + torch.where(onehot, 0.0, log_mitigation + log_compensation)
    top_x = x.amax(dim=1, keepdim=True)
    e = torch.exp(x - top_x)
    norm = e.sum(dim=1, keepdim=True)
    ce = (torch.log(norm) + top_x - z_label)[:, 0]
    grad = (e / norm - onehot.float()) * weights[:, None]
    return (weights * ce).double().sum(), grad


SEESAW_KERNEL = FusedKernel(_seesaw_kernel)


def seesaw_class_ce(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, counts: torch.Tensor, p: float, q: float
) -> torch.Tensor:
    """Seesaw's class term ``sum_i w_i CE(z_i + log(M_i C_i), y_i)``, fused.

    Args:
        logits: (F, K) class logits of the foreground RoIs.
        labels: (F,) int64 in [0, K).
        weights: (F,) float w_i.
        counts: (K,) cumulative label counts N (clamped to >= 1 here).
        p, q: mitigation and compensation exponents.
    """
    kwargs = dict(
        logits=logits, labels=labels, weights=weights.to(logits.dtype),
        log_counts=counts.to(logits.dtype).clamp(min=1.0).log(),
        p=logits.new_tensor(p), q=logits.new_tensor(q),
    )
    return PrecomputedGradient.apply(logits, lambda: SEESAW_KERNEL(**kwargs))

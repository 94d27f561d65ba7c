"""Fused softmax CE over column groups: the re-weighted, logit-adjusted, masked (Softmax EQL) and
grouped (BAGS) softmax losses in one compiled pass per group.

Shapes: R RoIs, L logit columns; a group is a contiguous slice of S columns with its own labels.
"""
from typing import NamedTuple, Optional, Sequence

import torch

from .counter_rng import uniform
from .kernel import FusedKernel, PrecomputedGradient


class SoftmaxGroup(NamedTuple):
    """One softmax over the columns [start, start + size) of the logits.

    ``labels`` (R,) int64 in [0, size) is each row's target inside the group; ``weights`` (R,)
    float is each row's weight in the loss (0: the row does not take part).
    """

    start: int
    size: int
    labels: torch.Tensor
    weights: torch.Tensor


class RandomRemoval(NamedTuple):
    """Remove entries from the softmax at random: entry (i, j), j not the label, leaves the
    denominator when ``rows_i * cols_j * 1[U_ij < prob]`` is 1 (Softmax EQL's beta), U from
    :mod:`lt_det.losses.fused.counter_rng` with ``keys`` (2,) int64 (one draw per step)."""

    rows: torch.Tensor  # (R,) float 0 / 1
    cols: torch.Tensor  # (L,) float 0 / 1
    prob: float
    keys: torch.Tensor  # (2,) int64


def _removal_kernel(*, row_ids, labels, cols, prob, keys):
    """(B, L) float 0 / 1: entry (i, j) of the rows ``row_ids`` leaves the softmax (RandomRemoval).

    (Float, not bool: inductor's CPU code stores bool outputs element by element, 7x slower.)
    """
    width = cols.shape[0]
    drawn = uniform(keys, row_ids, width) < prob
    return ((drawn & (cols > 0) & (labels[:, None] != torch.arange(width, device=cols.device))).float(),)


REMOVAL_KERNEL = FusedKernel(_removal_kernel)


def removal_mask(removal: RandomRemoval, labels: torch.Tensor) -> torch.Tensor:
    """(R, L) float 0 / 1 mask of the removed entries; U is drawn only for the rows with rows_i = 1.

    Row i, column j uses the counter ``i * L + j`` of :func:`counter_rng.uniform`, whatever the
    other rows.
    """
    width = removal.cols.shape[0]
    mask = removal.cols.new_zeros(labels.shape[0], width)
    row_ids = removal.rows.nonzero().squeeze(1)
    if len(row_ids):
        (mask[row_ids],) = REMOVAL_KERNEL(row_ids=row_ids, labels=labels[row_ids], cols=removal.cols,
                                          prob=removal.cols.new_tensor(removal.prob), keys=removal.keys)
    return mask


def _softmax_kernel(*, logits, labels, weights, removed, shift):
    """(sum_i w_i CE(x_i, label_i) as float64, its gradient (R, S)).

    ``x = z + shift``, -inf where ``removed`` (float 0 / 1) is 1;
    ``CE_i = log sum_j exp(x_ij) - x_i,label`` and ``d CE_i / d z_ij = softmax(x_i)_j - 1[j = label_i]``.
    """
    onehot = labels[:, None] == torch.arange(logits.shape[1], device=logits.device)
    x = logits + shift
    if removed is not None:
        x = torch.where(removed > 0, float("-inf"), x)
    top = x.amax(dim=1, keepdim=True)
    e = torch.exp(x - top)
    norm = e.sum(dim=1, keepdim=True)
    x_label = torch.where(onehot, x, 0.0).sum(dim=1, keepdim=True)
    ce = (torch.log(norm) + top - x_label)[:, 0]
    grad = (e / norm - onehot.float()) * weights[:, None]
    return (weights * ce).double().sum(), grad


SOFTMAX_KERNEL = FusedKernel(_softmax_kernel)


def _grouped_softmax_ce(logits, groups, logit_shift, removal):
    """(0-d float64 loss, (R, L) gradient) of :func:`grouped_softmax_ce`."""
    width = logits.shape[1]
    shift = logits.new_zeros(width) if logit_shift is None else logit_shift.to(logits.dtype)
    removed = None if removal is None else removal_mask(removal, groups[0].labels)
    whole = len(groups) == 1 and groups[0].size == width
    grad = None if whole else logits.new_zeros(logits.shape)
    total = torch.zeros((), dtype=torch.float64, device=logits.device)
    for g in groups:
        cols = slice(g.start, g.start + g.size)
        loss, group_grad = SOFTMAX_KERNEL(
            logits=logits[:, cols], labels=g.labels, weights=g.weights.to(logits.dtype),
            removed=None if removed is None else removed[:, cols], shift=shift[cols],
        )
        total += loss
        if whole:
            grad = group_grad
        else:
            grad[:, cols] = group_grad
    return total, grad


def grouped_softmax_ce(
    logits: torch.Tensor,
    groups: Sequence[SoftmaxGroup],
    logit_shift: Optional[torch.Tensor] = None,
    removal: Optional[RandomRemoval] = None,
) -> torch.Tensor:
    """``sum_g sum_i w_gi * CE(z'_i[group g], label_gi)``, fused (one kernel per group).

    Args:
        logits: (R, L) float32.
        groups: the softmaxes (:class:`SoftmaxGroup`); columns in no group get a zero gradient.
        logit_shift: (L,) constant added to every row's logits (no gradient).
        removal: entries removed from their softmax at random (:class:`RandomRemoval`; logit
            -inf, zero gradient); a row's label entry is never removed. One group only.

    Returns:
        scalar loss.
    """
    if removal is not None and len(groups) != 1:
        raise ValueError(f"removal works on one softmax group, got {len(groups)}")
    return PrecomputedGradient.apply(logits, lambda: _grouped_softmax_ce(logits, groups, logit_shift, removal))


def softmax_ce(
    logits: torch.Tensor,
    gt_classes: torch.Tensor,
    *,
    row_weights: Optional[torch.Tensor] = None,
    logit_shift: Optional[torch.Tensor] = None,
    removal: Optional[RandomRemoval] = None,
) -> torch.Tensor:
    """``mean_i w_i CE(z_i + shift, gt_i)`` over all L columns (w = 1 when ``row_weights`` is None)."""
    weights = logits.new_full(gt_classes.shape, 1.0 / len(gt_classes))
    if row_weights is not None:
        weights = weights * row_weights
    group = SoftmaxGroup(0, logits.shape[1], gt_classes, weights)
    return grouped_softmax_ce(logits, [group], logit_shift, removal)

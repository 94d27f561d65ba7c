"""The fused weighted binary loss: every sigmoid-family loss of lt_det in one compiled pass.

Shapes: R RoIs, L logit columns, of which the loss uses the first K; ``gt_classes`` (R,) int64 in
[0, K], where K means "no positive column in this row" (detectron2's background label).

Each sigmoid-family loss (sigmoid CE, focal, class-balanced focal, Balanced Sigmoid, EQL, DropLoss,
Federated, Gumbel CE, EQLv2, ACSL) is ``sum_ij w_ij * l(z_ij + s_ij, y_ij) / R`` with
``y = onehot(gt_classes, K + 1)[:, :K]``, a constant logit shift ``s`` and a weight
``w_ij = v_i * (y_ij q_j + (1 - y_ij) r_j (1 - I_ij))``: an ignore mask I that never touches a
positive entry, a row weight v and per-column weights q (positives) and r (negatives). (A loss
that trains a background column passes ``num_columns`` K + 1: label K is then that column's
positive.) Each loss module writes its own formula in plain PyTorch (its ``loss``); its
``fused_loss`` maps the formula onto the arguments of :func:`weighted_binary_loss`, which computes
the value and its hand-derived gradient in one kernel, and is tested equal to the reference.
"""
from typing import NamedTuple, Optional

import torch

from ..functional import GUMBEL_TRAIN_CLAMP
from .counter_rng import uniform
from .kernel import FusedKernel, PrecomputedGradient


# Per-element terms of each binary loss l: ``terms(x, params) -> (l(x, 0), l(x, 1), l'(x, 0),
# l'(x, 1))``, derivatives w.r.t. x. ``params`` is a (3,) tensor (only focal reads it).


def sigmoid_terms(x: torch.Tensor, params: torch.Tensor):
    """BCE: softplus(x) and softplus(-x), derivatives sigma(x) and -sigma(-x).

    Both softplus values share ``log1p(exp(-|x|))`` (softplus(+-x) = max(+-x, 0) + log1p(exp(-|x|))),
    and both sigmoids ``1 / (1 + e)`` and ``e / (1 + e)`` with e = exp(-|x|): each is exact
    where it is small, with one exp and one log1p per element.
    """
    e = torch.exp(-x.abs())
    log_term = torch.log1p(e)
    small = e / (1.0 + e)  # sigma(-|x|)
    large = 1.0 - small  # sigma(|x|), >= 1/2
    sigma_pos = torch.where(x >= 0, large, small)  # sigma(x)
    sigma_neg = torch.where(x >= 0, small, large)  # sigma(-x) = 1 - sigma(x)
    return x.clamp(min=0) + log_term, (-x).clamp(min=0) + log_term, sigma_pos, -sigma_neg


def gumbel_terms(z: torch.Tensor, params: torch.Tensor):
    """Gumbel BCE of GOL on x = clamp(z, -4, 10), with t = exp(-x) = -log eta(x):

    target 1: t, derivative -t; target 0: -log(1 - exp(-t)) = t - log(expm1(t)) (since
    1 - e^-t = expm1(t) e^-t), derivative t / expm1(t). One expm1 serves both, three transcendental
    functions per element in all; on the clamped range t lies in [e^-10, e^4], where expm1(t) is
    neither 0 nor large. Both derivatives are 0 where the clamp acted (clamp's backward is 1 on the
    closed interval).
    """
    lo, hi = GUMBEL_TRAIN_CLAMP
    x = z.clamp(lo, hi)
    inside = (x == z).float()
    t = torch.exp(-x)
    m = torch.expm1(t)
    return t - torch.log(m), t, t / m * inside, -t * inside


def focal_terms(x: torch.Tensor, params: torch.Tensor):
    """torchvision / fvcore sigmoid focal loss; ``params`` = (gamma, alpha_1, alpha_0).

    With p = sigma(x): target 0: a0 p^g softplus(x), derivative a0 p^g (g (1 - p) softplus(x) + p);
    target 1: a1 (1 - p)^g softplus(-x), derivative -a1 (1 - p)^g (g p softplus(-x) + 1 - p).
    The powers come from the softplus values already at hand, ``p^g = exp(-g softplus(-x))`` and
    ``(1 - p)^g = exp(-g softplus(x))``: one exp each, where a power with a run-time exponent
    (g is a tensor input) costs a log and an exp.
    """
    gamma, alpha_pos, alpha_neg = params[0], params[1], params[2]
    softplus_x, softplus_minus_x, p, minus_q = sigmoid_terms(x, params)
    q = -minus_q  # 1 - p
    mod_neg = torch.exp(-gamma * softplus_minus_x) * alpha_neg  # alpha_0 p^g
    mod_pos = torch.exp(-gamma * softplus_x) * alpha_pos  # alpha_1 (1 - p)^g
    return (
        mod_neg * softplus_x,
        mod_pos * softplus_minus_x,
        mod_neg * (gamma * q * softplus_x + p),
        -mod_pos * (gamma * p * softplus_minus_x + q),
    )


def _binary_kernel(terms, *, logits, gt_classes, params, shift_rows, shift_cols, ignore_rows, ignore_cols,
                   ignore_full, drop_rows, drop_ratio, keys, row_weights, pos_cols, neg_cols, used_cols, scale,
                   grad_sums=False, prob=None, threshold=None, threshold_rows=None, group_keep=None,
                   group_cols=None):
    """(sum_ij w_ij l_ij * scale as float64, w_ij l'_ij * scale as (R, L) fp32[, column sums]).

    ``s_ij = shift_rows_i shift_cols_j``; ``I_ij = ignore_cols_j (ignore_rows_i + drop_rows_i D_ij)
    [* ignore_full_ij] [* T_ij]`` with ``D_ij = 1[U_ij > drop_ratio]``; ``w_ij = row_weights_i
    used_cols_j (y_ij pos_cols_j + (1 - y_ij) neg_cols_j (1 - I_ij))``. With ``prob`` (a kernel for
    a score rule), ``T_ij = 1[prob(x_ij) < threshold]`` on the rows with ``threshold_rows_i = 1``
    and ``1 - group_keep[i, group_cols_j]`` on the others. With ``grad_sums``, also the (L,) sums
    over the rows of ``w_ij |l'_ij|`` on the positive and on the negative entries (no ``scale``).
    """
    num_rows, width = logits.shape
    cols = torch.arange(width, device=logits.device)
    positive = gt_classes[:, None] == cols
    x = logits + shift_rows[:, None] * shift_cols
    loss_neg, loss_pos, grad_neg, grad_pos = terms(x, params)
    ignore_by_row = ignore_rows[:, None]
    if drop_rows is not None:
        dropped = (uniform(keys, torch.arange(num_rows, device=logits.device), width) > drop_ratio).float()
        ignore_by_row = ignore_by_row + drop_rows[:, None] * dropped
    ignore = ignore_cols * ignore_by_row
    if ignore_full is not None:
        ignore = ignore * ignore_full
    if prob is not None:
        below = (prob(x) < threshold).float()
        ignore = ignore * torch.where(threshold_rows[:, None] > 0, below, 1.0 - group_keep[:, group_cols])
    weight = torch.where(positive, pos_cols, neg_cols * (1.0 - ignore)) * row_weights[:, None] * used_cols
    loss = (torch.where(positive, loss_pos, loss_neg) * weight).sum(dim=1)
    weighted_grad = torch.where(positive, grad_pos, grad_neg) * weight
    out = (loss.double().sum() * scale, weighted_grad * scale)
    if grad_sums:
        magnitude = weighted_grad.abs()
        out += (torch.where(positive, magnitude, 0.0).sum(dim=0), torch.where(positive, 0.0, magnitude).sum(dim=0))
    return out


# One top-level function per activation (and per output set): torch.compile caches graphs per
# function.
def _sigmoid_kernel(**kwargs):
    return _binary_kernel(sigmoid_terms, **kwargs)


def _gumbel_kernel(**kwargs):
    return _binary_kernel(gumbel_terms, **kwargs)


def _focal_kernel(**kwargs):
    return _binary_kernel(focal_terms, **kwargs)


def gumbel_prob(x: torch.Tensor) -> torch.Tensor:
    """GOL's training-time Gumbel CDF, eta(clamp(x, -4, 10))."""
    return torch.exp(-torch.exp(-x.clamp(*GUMBEL_TRAIN_CLAMP)))


def _sigmoid_threshold_kernel(**kwargs):
    return _binary_kernel(sigmoid_terms, prob=torch.sigmoid, **kwargs)


def _gumbel_threshold_kernel(**kwargs):
    return _binary_kernel(gumbel_terms, prob=gumbel_prob, **kwargs)


def _sigmoid_kernel_sums(**kwargs):
    return _binary_kernel(sigmoid_terms, grad_sums=True, **kwargs)


def _gumbel_kernel_sums(**kwargs):
    return _binary_kernel(gumbel_terms, grad_sums=True, **kwargs)


KERNELS = {
    "sigmoid": FusedKernel(_sigmoid_kernel),
    "gumbel": FusedKernel(_gumbel_kernel),
    "focal": FusedKernel(_focal_kernel),
}
KERNELS_WITH_SUMS = {
    "sigmoid": FusedKernel(_sigmoid_kernel_sums),
    "gumbel": FusedKernel(_gumbel_kernel_sums),
}
KERNELS_WITH_THRESHOLD = {
    "sigmoid": FusedKernel(_sigmoid_threshold_kernel),
    "gumbel": FusedKernel(_gumbel_threshold_kernel),
}


class Focal(NamedTuple):
    """Focal loss parameters: ``alpha_t (1 - p_t)^gamma BCE``; alpha < 0: no alpha_t."""

    gamma: float = 2.0
    alpha: float = 0.25


class ScoreThreshold(NamedTuple):
    """ACSL's rule, ``I_ij *= T_ij``: on the rows with ``rows_i = 1`` a term is ignored where the
    activation's score of its logit is below ``threshold``; on the other rows where
    ``group_keep[i, group_cols_j]`` is 0. The scores are the kernel's own (sigma, or the clamped
    Gumbel CDF), so no (R, L) score or mask tensor is made outside it."""

    threshold: torch.Tensor  # 0-d float
    rows: torch.Tensor  # (R,) float 0 / 1: the rows the score rule applies to
    group_keep: torch.Tensor  # (R, G) float 0 / 1, read on the other rows
    group_cols: torch.Tensor  # (L,) int64 in [0, G): each column's group


class RandomDrop(NamedTuple):
    """Ignore terms at random: ``I_ij += rows_i * 1[U_ij > ratio]`` (DropLoss's D), U from
    :mod:`lt_det.losses.fused.counter_rng` with ``keys`` (2,) int64 (one draw per step)."""

    rows: torch.Tensor  # (R,) float 0 / 1
    ratio: torch.Tensor  # 0-d float
    keys: torch.Tensor  # (2,) int64


def weighted_binary_loss(
    logits: torch.Tensor,
    gt_classes: torch.Tensor,
    *,
    activation: str = "sigmoid",
    focal: Optional[Focal] = None,
    num_columns: Optional[int] = None,
    logit_shift: Optional[torch.Tensor] = None,
    shift_rows: Optional[torch.Tensor] = None,
    ignore_cols: Optional[torch.Tensor] = None,
    ignore_rows: Optional[torch.Tensor] = None,
    ignore_full: Optional[torch.Tensor] = None,
    drop: Optional[RandomDrop] = None,
    score_threshold: Optional[ScoreThreshold] = None,
    row_weights: Optional[torch.Tensor] = None,
    pos_weight: Optional[torch.Tensor] = None,
    neg_weight: Optional[torch.Tensor] = None,
    grad_sums: bool = False,
):
    """``sum_ij w_ij * l(z_ij + s_ij, y_ij) / R``, fused (one pass, one gradient buffer).

    The ignore mask is ``I_ij = c_j * (a_i + b_i * D_ij) * M_ij`` and the weight
    ``w_ij = v_i * (y_ij q_j + (1 - y_ij) r_j (1 - I_ij))``, so positives keep their weight v_i q_j.

    Args:
        logits: (R, L) float32 with L >= K; the loss uses the first K columns (the others get a
            zero gradient), so callers need not slice off a background logit.
        gt_classes: (R,) int64 in [0, K]; K marks a row with no positive column.
        activation: the binary loss ``l``: "sigmoid" (BCE), "gumbel" (GOL's Gumbel BCE) or
            "focal" (sigmoid focal loss with ``focal``'s parameters).
        focal: gamma and alpha of the focal loss (default ``Focal()``: 2, 0.25).
        num_columns: K (default L).
        logit_shift: (K,) constant s_j added to the logits of column j (no gradient).
        shift_rows: (R,) float 0 / 1: the rows that get ``logit_shift`` (None: every row).
        ignore_cols: (K,) float c_j (None: no term is ignored).
        ignore_rows: (R,) float a_i (None: 1).
        ignore_full: (R, L) float M_ij (None: 1).
        drop: b_i and the random D_ij (:class:`RandomDrop`; None: b = 0).
        score_threshold: ACSL's score / group rule, a further factor of I (:class:`ScoreThreshold`;
            sigmoid and Gumbel, without ``grad_sums``).
        row_weights: (R,) float v_i (None: 1).
        pos_weight: (K,) float q_j, the weight of column j's positive entries (None: 1).
        neg_weight: (K,) float r_j, the weight of column j's negative entries (None: 1).
        grad_sums: also return the (K,) sums over the rows of ``w_ij |l'(z_ij + s_ij, y_ij)|`` on
            the positive entries and on the negative entries (EQLv2's gradient statistics; no
            1 / R). Sigmoid and Gumbel only.

    Returns:
        scalar loss with ``d loss / d logits = w * l'(z + s, y) / R``; with ``grad_sums``,
        ``(loss, positive sums, negative sums)``.
    """
    if activation not in KERNELS:
        raise ValueError(f"Unknown activation '{activation}'; expected one of {sorted(KERNELS)}")
    if ignore_cols is None and (ignore_full is not None or drop is not None):
        raise ValueError("ignore_full and drop act through ignore_cols: pass ignore_cols")
    num_rows, width = logits.shape
    num_columns = width if num_columns is None else num_columns

    def per_column(values, fill):
        full = logits.new_zeros(width)
        full[:num_columns] = fill if values is None else values
        return full

    def per_row(values):
        return logits.new_ones(num_rows) if values is None else values.to(logits.dtype)

    gamma, alpha = focal or Focal()
    alphas = (alpha, 1.0 - alpha) if alpha >= 0 else (1.0, 1.0)
    kwargs = dict(
        logits=logits,
        gt_classes=gt_classes,
        params=logits.new_tensor([gamma, *alphas]),
        shift_rows=per_row(shift_rows),
        shift_cols=per_column(logit_shift, 0.0),
        ignore_rows=per_row(ignore_rows),
        ignore_cols=per_column(ignore_cols, 0.0),
        ignore_full=ignore_full,
        drop_rows=None if drop is None else drop.rows.to(logits.dtype),
        drop_ratio=logits.new_zeros(()) if drop is None else drop.ratio.to(logits.dtype),
        keys=gt_classes.new_zeros(2) if drop is None else drop.keys,
        row_weights=per_row(row_weights),
        pos_cols=per_column(pos_weight, 1.0),
        neg_cols=per_column(neg_weight, 1.0),
        used_cols=per_column(None, 1.0),
        scale=logits.new_full((), 1.0 / num_rows),
    )
    if score_threshold is not None:
        if grad_sums or activation not in KERNELS_WITH_THRESHOLD:
            raise ValueError(f"score_threshold: no kernel for activation '{activation}'"
                             f"{' with grad_sums' if grad_sums else ''}; expected one of "
                             f"{sorted(KERNELS_WITH_THRESHOLD)} without grad_sums")
        threshold, rows, group_keep, group_cols = score_threshold
        kwargs.update(threshold=threshold.to(logits.dtype), threshold_rows=rows.to(logits.dtype),
                      group_keep=group_keep.to(logits.dtype), group_cols=group_cols)
        kernel = KERNELS_WITH_THRESHOLD[activation]
        return PrecomputedGradient.apply(logits, lambda: kernel(**kwargs))
    if not grad_sums:
        kernel = KERNELS[activation]
        return PrecomputedGradient.apply(logits, lambda: kernel(**kwargs))
    if activation not in KERNELS_WITH_SUMS:
        raise ValueError(f"grad_sums: activation '{activation}' has no kernel with gradient sums; "
                         f"expected one of {sorted(KERNELS_WITH_SUMS)}")
    sums = []

    def compute():
        total, grad, positive_sums, negative_sums = KERNELS_WITH_SUMS[activation](**kwargs)
        sums.extend((positive_sums[:num_columns], negative_sums[:num_columns]))
        return total, grad

    loss = PrecomputedGradient.apply(logits, compute)
    return loss, sums[0], sums[1]


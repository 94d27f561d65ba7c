"""Pure tensor math of the loss zoo: binary activations, a fused weighted binary loss, a fused
softmax CE over column groups, and Seesaw's fused class term.

Shape shorthand in this module:

    R: number of RoIs (all images of the step concatenated)
    L: number of logit columns
    K: number of columns a binary loss uses (the first K of L: foreground classes C, or C + 1
        for Gumbel CE)
    gt_classes: (R,) int64 in [0, K]; the value K means "no positive column in this row"
        (detectron2's background label when K = C).

The sigmoid-family losses (sigmoid CE, focal, class-balanced focal, Balanced Sigmoid, EQL, DropLoss,
Federated, Gumbel CE) are all ``sum_ij w_ij * l(z_ij + s_ij, y_ij) / R`` with
``y = onehot(gt_classes, K + 1)[:, :K]``, a constant logit shift ``s`` and a weight
``w_ij = v_i * (1 - I_ij * (1 - y_ij))`` whose ignore mask I never touches a positive entry. The
re-weighted, logit-adjusted, masked and grouped softmax losses are all sums of row-weighted softmax
CEs over column groups. :func:`weighted_binary_loss`, :func:`grouped_softmax_ce` and
:func:`seesaw_class_ce` compute the loss value and its hand-derived gradient in one fused kernel
(:mod:`lt_det.losses.kernels`) and return the gradient from ``backward``: the same formulas as
elementwise PyTorch, without its dozen (R, L) temporaries.
"""
import math
from typing import NamedTuple, Optional, Sequence, Tuple

import torch
from torch.autograd.function import once_differentiable

from .counter_rng import uniform
from .kernels import FusedKernel

GUMBEL_TRAIN_CLAMP = (-4.0, 10.0)  # GOL's released training clamp of the logits


def prior_bias(prior_prob: float) -> float:
    """Bias b with sigmoid(b) = prior_prob, i.e. -log((1 - pi) / pi) (pi = 0.001 gives -6.9068)."""
    return -math.log((1.0 - prior_prob) / prior_prob)


class _PrecomputedGradient(torch.autograd.Function):
    """A loss whose forward computes its gradient too: ``compute() -> (0-d total, d total / d logits)``.

    ``backward`` scales the stored gradient in place (no second (R, L) buffer), so it serves one
    backward pass only.
    """

    @staticmethod
    def forward(ctx, logits, compute):
        total, grad = compute()
        ctx.save_for_backward(grad)
        ctx.used = False
        return total.to(logits.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        if ctx.used:
            raise RuntimeError("The fused losses support one backward pass per forward (no retain_graph)")
        ctx.used = True
        (grad,) = ctx.saved_tensors
        return grad.mul_(grad_output), None


# ---------------------------------------------------------------------------------------------
# Binary activations. ``*_terms(x, params)`` gives, elementwise for logits x, the loss for target 0
# and target 1 and their derivatives w.r.t. x: (loss_neg, loss_pos, grad_neg, grad_pos).


def sigmoid_terms(x: torch.Tensor, params: Tuple[float, ...]) -> Tuple[torch.Tensor, ...]:
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


def gumbel_terms(z: torch.Tensor, params: Tuple[float, ...]) -> Tuple[torch.Tensor, ...]:
    """Gumbel BCE of GOL on x = clamp(z, -4, 10), with t = exp(-x) = -log eta(x):

    target 1: t, derivative -t; target 0: -log(1 - exp(-t)) = -log(-expm1(-t)), derivative
    t / expm1(t). Both derivatives are 0 where the clamp acted (clamp's backward is 1 on the closed
    interval).
    """
    lo, hi = GUMBEL_TRAIN_CLAMP
    x = z.clamp(lo, hi)
    inside = (x == z).float()
    t = torch.exp(-x)
    return -torch.log(-torch.expm1(-t)), t, t / torch.expm1(t) * inside, -t * inside


def focal_terms(x: torch.Tensor, params: Tuple[float, float, float]) -> Tuple[torch.Tensor, ...]:
    """torchvision / fvcore sigmoid focal loss; ``params`` = (gamma, alpha_1, alpha_0).

    With p = sigma(x): target 0: a0 p^g softplus(x), derivative a0 p^g (g (1 - p) softplus(x) + p);
    target 1: a1 (1 - p)^g softplus(-x), derivative -a1 (1 - p)^g (g p softplus(-x) + 1 - p).
    """
    gamma, alpha_pos, alpha_neg = params[0], params[1], params[2]
    softplus_x, softplus_minus_x, p, minus_q = sigmoid_terms(x, params)
    q = -minus_q  # 1 - p
    mod_neg = p.pow(gamma) * alpha_neg
    mod_pos = q.pow(gamma) * alpha_pos
    return (
        mod_neg * softplus_x,
        mod_pos * softplus_minus_x,
        mod_neg * (gamma * q * softplus_x + p),
        -mod_pos * (gamma * p * softplus_minus_x + q),
    )


def _binary_kernel(terms, z, gt, shift_rows, ignore_rows, drop_rows, row_ids, row_weights, ignore_full,
                   shift_cols, ignore_cols, drop_ratio, keys, params, num_columns, scale):
    """(sum_ij w_ij l_ij * scale as float64, w_ij l'_ij * scale as (B, L) fp32) of one row block.

    ``s_ij = shift_rows_i shift_cols_j``; ``I_ij = ignore_cols_j (ignore_rows_i + drop_rows_i D_ij)
    [* ignore_full_ij]`` with ``D_ij = 1[U_ij > drop_ratio]`` (U of the rows ``row_ids``);
    ``w_ij = row_weights_i (1 - I_ij (1 - y_ij))`` for j < K and 0 for the columns the loss does
    not use. ``params``: the activation's constants (a tuple of floats).
    """
    num_rows, width = z.shape
    cols = torch.arange(width, device=z.device)
    positive = gt[:, None] == cols
    loss_neg, loss_pos, grad_neg, grad_pos = terms(z + shift_rows[:, None] * shift_cols, params)
    ignore_by_row = ignore_rows[:, None]
    if drop_rows is not None:
        dropped = (uniform(keys, row_ids, width) > drop_ratio).float()
        ignore_by_row = ignore_by_row + drop_rows[:, None] * dropped
    ignore = ignore_cols * ignore_by_row
    if ignore_full is not None:
        ignore = ignore * ignore_full
    weight = torch.where(positive, 1.0, 1.0 - ignore) * row_weights[:, None] * (cols < num_columns)
    loss = (torch.where(positive, loss_pos, loss_neg) * weight).sum(dim=1)
    grad = torch.where(positive, grad_pos, grad_neg) * (weight * scale)
    return loss.double().sum() * scale, grad


# One top-level function per activation: torch.compile caches graphs per function.
def _sigmoid_kernel(*args):
    return _binary_kernel(sigmoid_terms, *args)


def _gumbel_kernel(*args):
    return _binary_kernel(gumbel_terms, *args)


def _focal_kernel(*args):
    return _binary_kernel(focal_terms, *args)


class BinaryActivation:
    """A binary activation: its fused loss kernel, the kernel's parameters and its probability."""

    def __init__(self, name: str, kernel: FusedKernel, params: Sequence[float] = ()):
        self.name, self.kernel, self.params = name, kernel, tuple(params)

    def probs(self, z: torch.Tensor) -> torch.Tensor:
        """Test-time probability, shaped like z."""
        return torch.exp(-torch.exp(-z)) if self.name == "gumbel" else torch.sigmoid(z)


def sigmoid_focal(alpha: float = 0.25, gamma: float = 2.0) -> BinaryActivation:
    """torchvision / fvcore focal loss ``alpha_t (1 - p_t)^gamma BCE`` (alpha < 0: no alpha_t)."""
    alphas = (alpha, 1.0 - alpha) if alpha >= 0 else (1.0, 1.0)
    return BinaryActivation("focal", FOCAL_KERNEL, (gamma, *alphas))


FOCAL_KERNEL = FusedKernel(_focal_kernel)
SIGMOID = BinaryActivation("sigmoid", FusedKernel(_sigmoid_kernel))
GUMBEL = BinaryActivation("gumbel", FusedKernel(_gumbel_kernel))
BINARY_ACTIVATIONS = {"sigmoid": SIGMOID, "gumbel": GUMBEL}


class RandomDrop(NamedTuple):
    """Ignore terms at random: ``I_ij += rows_i * 1[U_ij > ratio]`` (DropLoss's D), U from
    :mod:`lt_det.losses.counter_rng` with ``keys`` (2,) int64 (one draw per step)."""

    rows: torch.Tensor  # (R,) float 0 / 1
    ratio: torch.Tensor  # 0-d float
    keys: torch.Tensor  # (2,) int64


def weighted_binary_loss(
    logits: torch.Tensor,
    gt_classes: torch.Tensor,
    num_columns: Optional[int] = None,
    activation: BinaryActivation = SIGMOID,
    *,
    logit_shift: Optional[torch.Tensor] = None,
    shift_rows: Optional[torch.Tensor] = None,
    ignore_cols: Optional[torch.Tensor] = None,
    ignore_rows: Optional[torch.Tensor] = None,
    ignore_full: Optional[torch.Tensor] = None,
    drop: Optional[RandomDrop] = None,
    row_weights: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``sum_ij w_ij * l(z_ij + s_ij, y_ij) / R``, fused (one pass, one gradient buffer).

    The ignore mask is ``I_ij = c_j * (a_i + b_i * D_ij) * M_ij`` and the weight
    ``w_ij = v_i * (1 - I_ij * (1 - y_ij))``, so positives keep their weight v_i.

    Args:
        logits: (R, L) float32 with L >= K; the loss uses the first K columns (the others get a
            zero gradient), so callers need not slice off a background logit.
        gt_classes: (R,) int64 in [0, K]; K marks a row with no positive column.
        num_columns: K (default L).
        activation: the binary loss ``l`` (:data:`SIGMOID`, :data:`GUMBEL`, :func:`sigmoid_focal`).
        logit_shift: (K,) constant s_j added to the logits of column j (no gradient).
        shift_rows: (R,) float 0 / 1: the rows that get ``logit_shift`` (None: every row).
        ignore_cols: (K,) float c_j (None: no term is ignored).
        ignore_rows: (R,) float a_i (None: 1).
        ignore_full: (R, L) float M_ij (None: 1).
        drop: b_i and the random D_ij (:class:`RandomDrop`; None: b = 0).
        row_weights: (R,) float v_i (None: 1).

    Returns:
        scalar loss with ``d loss / d logits = w * l'(z + s, y) / R``.
    """
    num_rows, width = logits.shape
    num_columns = width if num_columns is None else num_columns

    def per_column(values, fill):
        full = logits.new_full((width,), fill)
        if values is not None:
            full[:num_columns] = values
        return full

    def per_row(values, fill):
        return logits.new_full((num_rows,), fill) if values is None else values.to(logits.dtype)

    if ignore_cols is None and (ignore_full is not None or drop is not None):
        raise ValueError("ignore_full and drop act through ignore_cols: pass ignore_cols")
    no_drop = RandomDrop(None, logits.new_zeros(()), gt_classes.new_zeros(2)) if drop is None else drop
    row_args = (
        logits,
        gt_classes,
        per_row(shift_rows, 1.0),
        per_row(ignore_rows, 1.0),
        no_drop.rows,
        None if drop is None else torch.arange(num_rows, device=logits.device),
        per_row(row_weights, 1.0),
        ignore_full,
    )
    shared_args = (
        per_column(logit_shift, 0.0),
        per_column(ignore_cols, 0.0),
        no_drop.ratio,
        no_drop.keys,
        activation.params,
        num_columns,
        logits.new_full((), 1.0 / num_rows),
    )
    return _PrecomputedGradient.apply(logits, lambda: activation.kernel(row_args, shared_args, num_rows, width))


# ---------------------------------------------------------------------------------------------
# Softmax CE over column groups.


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
    :mod:`lt_det.losses.counter_rng` with ``keys`` (2,) int64 (one draw per step)."""

    rows: torch.Tensor  # (R,) float 0 / 1
    cols: torch.Tensor  # (L,) float 0 / 1
    prob: float
    keys: torch.Tensor  # (2,) int64


def _removal_kernel(row_ids, labels, cols, prob: float, keys):
    """(B, L) float 0 / 1: entry (i, j) of the rows ``row_ids`` leaves the softmax (RandomRemoval).

    (Float, not bool: inductor's CPU code stores bool outputs element by element, 7x slower.)
    """
    width = cols.shape[0]
    drawn = uniform(keys, row_ids, width) < prob
    return ((drawn & (cols > 0) & (labels[:, None] != torch.arange(width, device=cols.device))).float(),)


REMOVAL_KERNEL = FusedKernel(_removal_kernel)


def removal_mask(removal: RandomRemoval, labels: torch.Tensor) -> torch.Tensor:
    """(R, L) float 0 / 1 mask of the removed entries; U is drawn only for the rows with rows_i = 1."""
    width = removal.cols.shape[0]
    mask = removal.cols.new_zeros(labels.shape[0], width)
    row_ids = removal.rows.nonzero().squeeze(1)
    if len(row_ids):
        (mask[row_ids],) = REMOVAL_KERNEL((row_ids, labels[row_ids]), (removal.cols, removal.prob, removal.keys),
                                          len(row_ids), width)
    return mask


def _softmax_kernel(z, labels, weights, removed, shift):
    """(sum_i w_i CE(x_i, label_i) as float64, its gradient (B, S)) of one row block.

    ``x = z + shift``, -inf where ``removed`` (float 0 / 1) is 1;
    ``CE_i = log sum_j exp(x_ij) - x_i,label`` and ``d CE_i / d z_ij = softmax(x_i)_j - 1[j = label_i]``.
    """
    onehot = labels[:, None] == torch.arange(z.shape[1], device=z.device)
    x = z + shift
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
    num_rows, width = logits.shape
    shift = logits.new_zeros(width) if logit_shift is None else logit_shift.to(logits.dtype)
    removed = None if removal is None else removal_mask(removal, groups[0].labels)
    whole = len(groups) == 1 and groups[0].size == width
    grad = None if whole else logits.new_zeros(logits.shape)
    total = torch.zeros((), dtype=torch.float64, device=logits.device)
    for g in groups:
        cols = slice(g.start, g.start + g.size)
        group_removed = None if removed is None else removed[:, cols]
        row_args = (logits[:, cols], g.labels, g.weights.to(logits.dtype), group_removed)
        loss, group_grad = SOFTMAX_KERNEL(row_args, (shift[cols],), num_rows, g.size)
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
    return _PrecomputedGradient.apply(logits, lambda: _grouped_softmax_ce(logits, groups, logit_shift, removal))


def softmax_ce(
    logits: torch.Tensor,
    gt_classes: torch.Tensor,
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


# ---------------------------------------------------------------------------------------------
# Seesaw's class term.

SEESAW_SELF_SCORE_MIN = 1e-2  # mmdetection's eps on sigma_iy


def _seesaw_kernel(z, labels, weights, log_counts, p: float, q: float):
    """(sum_i w_i CE(z_i + log M_i + log C_i, label_i) as float64, its gradient (B, K)).

    In log space, with y = label_i and j != y (both terms 0 at j = y, and detached):
    ``log M_ij = p min(0, log N_j - log N_y)`` and
    ``log C_ij = q max(0, log sigma_ij - log max(sigma_iy, 1e-2))`` with
    ``log sigma_ij = z_ij - logsumexp(z_i)``. The gradient is ``softmax(x_i) - onehot(y)``.
    """
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
    num_rows, width = logits.shape
    row_args = (logits, labels, weights.to(logits.dtype))
    shared_args = (counts.to(logits.dtype).clamp(min=1.0).log(), p, q)
    return _PrecomputedGradient.apply(logits, lambda: SEESAW_KERNEL(row_args, shared_args, num_rows, width))

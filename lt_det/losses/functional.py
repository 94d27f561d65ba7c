"""Pure tensor math of the loss zoo: activations, a fused weighted binary loss, a fused softmax CE.

Shape shorthand in this module:

    R: number of RoIs (all images of the step concatenated)
    K: number of logit columns a binary loss sees (foreground classes C, or C + 1 for Gumbel CE)
    gt_classes: (R,) int64 in [0, K]; the value K means "no positive column in this row"
        (detectron2's background label when K = C).

The sigmoid-family losses (sigmoid CE, focal, Balanced Sigmoid, EQL, DropLoss, Federated, Gumbel
CE) are all ``sum_ij w_ij * l(z_ij, y_ij) / R`` with ``y = onehot(gt_classes, K + 1)[:, :K]`` and a
weight ``w_ij = 1 - ignore_ij * (1 - y_ij)`` that never touches a positive entry. The re-weighted,
logit-adjusted, masked and grouped softmax losses are all sums of row-weighted softmax CEs over
column groups. Plain elementwise PyTorch spends most of its time allocating, page-faulting and
walking (R, K) temporaries (R * K = 9.9 M at LVIS scale). :func:`weighted_binary_loss` and
:func:`grouped_softmax_ce` compute the loss value and its gradient in one pass over row blocks
that fit in cache, write the gradient into one preallocated buffer, and return it from
``backward``: the same formulas, fused.
"""
import math
from typing import Callable, NamedTuple, Optional, Sequence, Tuple

import torch
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

# Elements per row block of the fused losses on CPU. Each op of a block runs on PyTorch's
# intra-op threads (a block is 8x its parallel grain, at::internal::GRAIN_SIZE = 32768), and a
# block with its few temporaries (~1 MB each) stays near the caches. Measured on 2 cores at
# R x K = 8192 x 1203 (tools/benchmark_losses.py): 32K-element blocks spread over Python threads
# were 1.5-2x slower than this (GIL-bound), whole-problem blocks ~10-40% slower.
_BLOCK_ELEMENTS = 262144

GUMBEL_TRAIN_CLAMP = (-4.0, 10.0)  # GOL's released training clamp of the logits


def prior_bias(prior_prob: float) -> float:
    """Bias b with sigmoid(b) = prior_prob, i.e. -log((1 - pi) / pi) (pi = 0.001 gives -6.9068)."""
    return -math.log((1.0 - prior_prob) / prior_prob)


class BinaryActivation:
    """One binary activation: its per-element loss for target 0 and 1, and its probability."""

    name = ""

    def negative(self, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Loss of target 0 and its derivative w.r.t. z, both shaped like z (fp32)."""
        raise NotImplementedError

    def positive(self, z: torch.Tensor) -> torch.Tensor:
        """Loss of target 1, differentiable (autograd), shaped like z."""
        raise NotImplementedError

    def probs(self, z: torch.Tensor) -> torch.Tensor:
        """Test-time probability, shaped like z."""
        raise NotImplementedError


class Sigmoid(BinaryActivation):
    """sigma(z); BCE(z, 0) = softplus(z), BCE(z, 1) = softplus(-z), d softplus(z) / dz = sigma(z)."""

    name = "sigmoid"

    def negative(self, z):
        return F.softplus(z), torch.sigmoid(z)

    def positive(self, z):
        return F.softplus(-z)

    def probs(self, z):
        return torch.sigmoid(z)


class Gumbel(BinaryActivation):
    """Gumbel CDF eta(x) = exp(-exp(-x)) (GOL), on logits clamped to [-4, 10] while training.

    In log space: -log eta(x) = exp(-x) = t and -log(1 - eta(x)) = -log(-expm1(-t)); the
    derivative of the latter is t * (1 - a) / a with a = -expm1(-t) (autograd's own form:
    expm1's backward uses its result + 1). The gradient is zero outside the clamp range.
    """

    name = "gumbel"

    def negative(self, z):
        lo, hi = GUMBEL_TRAIN_CLAMP
        x = z.clamp(lo, hi)
        # 1 on [lo, hi] (boundaries included, as clamp's backward), 0 where the clamp acted.
        inside = torch.sub(x, z).abs_().sign_().neg_().add_(1.0)
        t = x.neg_().exp_()
        a = t.neg().expm1_().neg_()
        loss = a.log().neg_()
        grad = torch.rsub(a, 1.0).mul_(t).div_(a).mul_(inside)
        return loss, grad

    def positive(self, z):
        return torch.exp(-z.clamp(*GUMBEL_TRAIN_CLAMP))

    def probs(self, z):
        return torch.exp(-torch.exp(-z))


class SigmoidFocal(BinaryActivation):
    """torchvision / fvcore sigmoid focal loss: alpha_t (1 - p_t)^gamma BCE (alpha < 0: no alpha_t).

    Target 0: (1 - alpha) p^gamma softplus(z), derivative (1 - alpha) p^gamma (gamma (1 - p)
    softplus(z) + p) with p = sigma(z).
    """

    name = "focal"

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0):
        self.alpha, self.gamma = alpha, gamma

    def negative(self, z):
        p = torch.sigmoid(z)
        softplus = F.softplus(z)
        modulator = p.pow(self.gamma)
        if self.alpha >= 0:
            modulator.mul_(1.0 - self.alpha)
        grad = torch.rsub(p, 1.0).mul_(self.gamma).mul_(softplus).add_(p).mul_(modulator)
        return softplus.mul_(modulator), grad

    def positive(self, z):
        loss = F.softplus(-z) * (1.0 - torch.sigmoid(z)).pow(self.gamma)
        return loss * self.alpha if self.alpha >= 0 else loss

    def probs(self, z):
        return torch.sigmoid(z)


SIGMOID = Sigmoid()
GUMBEL = Gumbel()
BINARY_ACTIVATIONS = {"sigmoid": SIGMOID, "gumbel": GUMBEL}

# A function of a row block (slice of RoIs) giving a float 0 / 1 tensor broadcastable to (rows, K).
# (Float, not bool: this build's bool kernels are ~10x slower than its float ones.)
BlockFn = Callable[[slice], torch.Tensor]


def for_row_blocks(block_fn: Callable[[slice], torch.Tensor], num_rows: int, num_cols: int, device) -> torch.Tensor:
    """Sum of ``block_fn(rows)`` (float64 scalars) over the row blocks of an (R, num_cols) problem.

    On an accelerator: one block (its kernels are large). On CPU: blocks of about
    ``_BLOCK_ELEMENTS`` elements, in order, so the result does not depend on the thread count.
    ``block_fn`` must only write rows of its own block.
    """
    if torch.device(device).type != "cpu":
        return block_fn(slice(0, num_rows))
    step = max(1, _BLOCK_ELEMENTS // max(num_cols, 1))
    with torch.no_grad():
        return sum((block_fn(slice(s, s + step)) for s in range(0, num_rows, step)),
                   torch.zeros((), dtype=torch.float64))


class _WeightedBinaryLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, gt_classes, num_columns, activation, ignore, logit_shift, shift_rows, row_weights):
        num_rows, k = logits.shape[0], num_columns
        grad = torch.empty_like(logits)
        if logits.shape[1] > k:
            grad[:, k:] = 0.0  # columns the loss does not use
        scale = 1.0 / num_rows

        def block(rows):
            z = logits[rows, :k]
            if logit_shift is not None:
                z = z + (logit_shift if shift_rows is None else shift_rows[rows, None] * logit_shift)
            loss, dz = activation.negative(z)
            # Positive entries are replaced below; zero their negative terms here.
            gt = gt_classes[rows]
            pos = (gt < k).nonzero().squeeze(1)
            flat = pos * k + gt[pos]
            loss.view(-1).index_fill_(0, flat, 0.0)
            dz.view(-1).index_fill_(0, flat, 0.0)
            if ignore is not None:
                keep = torch.rsub(ignore(rows), 1.0)
                loss.mul_(keep)
                dz.mul_(keep)
            if row_weights is not None:
                loss.mul_(row_weights[rows, None])
                dz.mul_(row_weights[rows, None])
            torch.mul(dz, scale, out=grad[rows, :k])
            return loss.sum(dtype=torch.float64)

        total = for_row_blocks(block, num_rows, k, logits.device)

        pos = (gt_classes < k).nonzero().squeeze(1)
        cols = gt_classes[pos]
        z_pos = logits[pos, cols]
        if logit_shift is not None:
            z_pos = z_pos + (logit_shift[cols] if shift_rows is None else shift_rows[pos] * logit_shift[cols])
        with torch.enable_grad():
            z_pos = z_pos.detach().requires_grad_()
            loss_pos = activation.positive(z_pos)
            if row_weights is not None:
                loss_pos = loss_pos * row_weights[pos]
            loss_pos = loss_pos.sum()
            (dz_pos,) = torch.autograd.grad(loss_pos, z_pos)
        grad[pos, cols] = dz_pos * scale
        ctx.save_for_backward(grad)
        ctx.used = False
        return ((total + loss_pos.detach().double()) * scale).to(logits.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        # The gradient buffer is scaled in place (no second (R, L) buffer), so it serves one
        # backward pass only.
        if ctx.used:
            raise RuntimeError("weighted_binary_loss supports one backward pass per forward (no retain_graph)")
        ctx.used = True
        (grad,) = ctx.saved_tensors
        return grad.mul_(grad_output), None, None, None, None, None, None, None


def weighted_binary_loss(
    logits: torch.Tensor,
    gt_classes: torch.Tensor,
    num_columns: Optional[int] = None,
    activation: BinaryActivation = SIGMOID,
    ignore: Optional[BlockFn] = None,
    logit_shift: Optional[torch.Tensor] = None,
    shift_rows: Optional[torch.Tensor] = None,
    row_weights: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``sum_ij w_ij * l(z_ij + s_ij, y_ij) / R``, fused (one pass, one gradient buffer).

    Args:
        logits: (R, L) float32 with L >= K; the loss uses the first K columns (the others get a
            zero gradient), so callers need not slice off a background logit.
        gt_classes: (R,) int64 in [0, K]; K marks a row with no positive column.
        num_columns: K (default L).
        activation: the binary loss ``l`` (:class:`Sigmoid`, :class:`Gumbel`, :class:`SigmoidFocal`).
        ignore: ``rows -> float 0 / 1 (rows, K) or broadcastable`` mask I; the weight is
            ``w = 1 - I * (1 - y)``, so positives always keep weight 1. None: every weight is 1.
        logit_shift: (K,) constant s_j added to every logit of column j (no gradient).
        shift_rows: (R,) float 0/1: the rows that get ``logit_shift`` (None: every row).
        row_weights: (R,) float v_i multiplying every term of row i, positives included:
            ``w_ij = v_i * (1 - I_ij * (1 - y_ij))`` (None: v = 1).

    Returns:
        scalar loss with ``d loss / d logits = w * l'(z + s, y) / R``.
    """
    num_columns = logits.shape[1] if num_columns is None else num_columns
    return _WeightedBinaryLoss.apply(logits, gt_classes, num_columns, activation, ignore, logit_shift, shift_rows,
                                     row_weights)



class SoftmaxGroup(NamedTuple):
    """One softmax over the columns [start, start + size) of the logits.

    ``labels`` (R,) int64 in [0, size) is each row's target inside the group; ``weights`` (R,)
    float is each row's weight in the loss (0: the row does not take part).
    """

    start: int
    size: int
    labels: torch.Tensor
    weights: torch.Tensor


class _GroupedSoftmaxCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, groups, logit_shift, mask):
        num_rows, num_cols = logits.shape
        grad = torch.empty_like(logits)
        covered = torch.zeros(num_cols, dtype=torch.bool)
        for g in groups:
            covered[g.start : g.start + g.size] = True
        if not covered.all():
            grad[:, ~covered.to(logits.device)] = 0.0

        def block(rows):
            z = logits[rows]
            if logit_shift is not None:
                z = z + logit_shift
            if mask is not None:
                z = z.masked_fill(mask[rows], float("-inf"))
            total = torch.zeros((), dtype=torch.float64, device=logits.device)
            for g in groups:
                z_g = z[:, g.start : g.start + g.size]
                labels, weights = g.labels[rows, None], g.weights[rows]
                top = z_g.max(dim=1, keepdim=True).values
                p = (z_g - top).exp_()
                norm = p.sum(dim=1, keepdim=True)
                # CE_i = log sum_j exp(z_ij) - z_i,label
                ce = (norm.log() + top - z_g.gather(1, labels)).squeeze(1)
                total += (weights * ce).sum(dtype=torch.float64)
                p.div_(norm).scatter_add_(1, labels, p.new_full(labels.shape, -1.0)).mul_(weights[:, None])
                grad[rows, g.start : g.start + g.size] = p
            return total

        total = for_row_blocks(block, num_rows, num_cols, logits.device)
        ctx.save_for_backward(grad)
        ctx.used = False
        return total.to(logits.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        if ctx.used:
            raise RuntimeError("grouped_softmax_ce supports one backward pass per forward (no retain_graph)")
        ctx.used = True
        (grad,) = ctx.saved_tensors
        return grad.mul_(grad_output), None, None, None


def grouped_softmax_ce(
    logits: torch.Tensor,
    groups: Sequence[SoftmaxGroup],
    logit_shift: Optional[torch.Tensor] = None,
    mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``sum_g sum_i w_gi * CE(z'_i[group g], label_gi)``, fused (one pass, one gradient buffer).

    Args:
        logits: (R, L) float32.
        groups: the softmaxes (:class:`SoftmaxGroup`); columns in no group get a zero gradient.
        logit_shift: (L,) constant added to every row's logits (no gradient).
        mask: (R, L) bool; True removes the entry from its softmax (logit -inf, zero gradient).
            A row's label entry must not be masked.

    Returns:
        scalar loss.
    """
    return _GroupedSoftmaxCE.apply(logits, tuple(groups), logit_shift, mask)


def softmax_ce(
    logits: torch.Tensor,
    gt_classes: torch.Tensor,
    row_weights: Optional[torch.Tensor] = None,
    logit_shift: Optional[torch.Tensor] = None,
    mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``mean_i w_i CE(z_i + shift, gt_i)`` over all L columns (w = 1 when ``row_weights`` is None)."""
    weights = logits.new_full(gt_classes.shape, 1.0 / len(gt_classes))
    if row_weights is not None:
        weights = weights * row_weights
    group = SoftmaxGroup(0, logits.shape[1], gt_classes, weights)
    return grouped_softmax_ce(logits, [group], logit_shift, mask)

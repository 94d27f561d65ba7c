"""Counter-based uniform random numbers for the fused kernels of the losses that drop terms at
random (DropLoss, Softmax EQL). The losses' reference implementations draw with ``torch.rand``,
as the released code does; the fused kernels draw the same distribution from this hash.

``U_ij = h(i * L + j) / 2^24`` for element (i, j) of an (R, L) problem, with ``h`` two rounds of
Wellons's ``lowbias32`` integer hash keyed by two 32-bit keys drawn from torch's global
generator (so a run is reproducible under ``torch.manual_seed``). Why not ``torch.rand``: PyTorch's
CPU generator is sequential (about 15 ms for the draws of one LVIS-scale step, more than the whole
fused loss), and ``torch.rand`` inside ``torch.compile`` is not vectorised on CPU. A counter-based
hash is a pure, elementwise function of (keys, index): the compiled kernel and its uncompiled
fallback draw the same numbers, on any device. Each U has 24 random bits
(float32's mantissa), the same resolution as ``torch.rand``'s float32 values. The element index is
taken modulo 2^32, so the numbers repeat only beyond 4.3e9 elements per step.
"""
import torch

_MASK32 = 0xFFFFFFFF
# lowbias32's multipliers (https://nullprogram.com/blog/2018/07/31/). The second one is used minus
# 2^32 (the same residue mod 2^32) so that no product of a 32-bit value overflows int64.
_MUL1 = 0x7FEB352D
_MUL2 = 0x846CA68B - (1 << 32)


def lowbias32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 of int64 values in [0, 2^32), elementwise; a bijection of [0, 2^32)."""
    x = x ^ (x >> 16)
    x = (x * _MUL1) & _MASK32
    x = x ^ (x >> 15)
    x = (x * _MUL2) & _MASK32
    return x ^ (x >> 16)


def draw_keys(device) -> torch.Tensor:
    """(2,) int64 keys in [0, 2^32) from torch's global generator (one draw per step)."""
    return torch.randint(0, 1 << 32, (2,), dtype=torch.int64).to(device)


def uniform(keys: torch.Tensor, rows: torch.Tensor, num_cols: int) -> torch.Tensor:
    """(B, num_cols) float32 U in [0, 1) for the rows ``rows`` (B,) int64 of an (R, num_cols)
    problem; row i, column j uses the counter ``i * num_cols + j``."""
    counter = rows[:, None] * num_cols + torch.arange(num_cols, device=rows.device)
    bits = lowbias32((lowbias32((counter + keys[0]) & _MASK32) + keys[1]) & _MASK32)
    return (bits >> 8).float() * (1.0 / (1 << 24))

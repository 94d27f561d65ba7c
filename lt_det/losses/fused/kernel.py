"""Runs a fused loss kernel compiled with ``torch.compile`` or, as a fallback, eagerly over row blocks.

A kernel is a pure function of a few (R, ...) row tensors and some shared arguments that returns
``(loss_sum, grad)``: a 0-d float64 sum of the loss terms and their (R, L) gradient, computed in
one pass. Compiled (inductor: vectorised C++ with OpenMP on CPU, Triton on CUDA), one kernel reads
the logits once and writes the gradient once; eager PyTorch would walk a dozen (R, L) temporaries
(at LVIS scale R x L = 9.9 M elements). The eager fallback runs the same function, uncompiled, on
row blocks that fit in cache; it is what runs when compilation is switched off
(``MODEL.LT_LOSS.COMPILE: False``, :func:`set_compile`) or fails (e.g. no C++ compiler), so the
formulas exist once.

``dynamic=True`` compiles one graph for every R (the RoI count changes between steps). A compiled
kernel costs a few seconds on first use per process and graph variant (inductor's on-disk cache
makes later processes faster).
"""
import logging
from typing import Callable, Sequence

import torch

logger = logging.getLogger(__name__)

# Elements per row block of the eager fallback on CPU. Each op of a block runs on PyTorch's
# intra-op threads (a block is 8x its parallel grain, at::internal::GRAIN_SIZE = 32768), and a
# block with its temporaries (~1 MB each) stays near the caches.
_BLOCK_ELEMENTS = 262144
# On an accelerator blocks are larger (its kernels want size) but still bounded: the out-of-place
# formulas hold a few dozen block-sized temporaries (16 MB each at this size in fp32).
_ACCELERATOR_BLOCK_ELEMENTS = 1 << 22

_compile = True  # process-wide: whether a working compiler exists is a property of the process
_kernels = []  # every FusedKernel, for compile_failures()


def set_compile(enabled: bool) -> None:
    """Compile the fused loss kernels (True, the default) or run them eagerly over row blocks."""
    global _compile
    _compile = bool(enabled)


def compile_enabled() -> bool:
    return _compile


def compile_failures() -> dict:
    """{kernel function name: exception} of the kernels that fell back to eager."""
    return {k.fn.__name__: k.compile_error for k in _kernels if k.compile_error is not None}


class FusedKernel:
    """A row-wise kernel ``fn(*row_args, *shared_args) -> tuple of tensors``.

    ``row_args`` are tensors whose first dimension is R (or None); an eager row block passes
    their slices. Each output is either 0-d (a sum over rows: the blocks' values are added) or has
    R rows (the blocks' rows are concatenated).
    """

    def __init__(self, fn: Callable):
        self.fn = fn
        self._compiled = None
        self.compile_error = None  # the exception that made this kernel fall back to eager
        _kernels.append(self)

    def __call__(self, row_args: Sequence, shared_args: Sequence, num_rows: int, num_cols: int):
        device = next(a for a in row_args if a is not None).device
        # The kernels compute in fp32 whatever the caller's autocast state; switching it off also
        # keeps that state out of the compiled graph's guards (fewer recompilations).
        with torch.autocast(device.type, enabled=False):
            if _compile and self.compile_error is None:
                try:
                    return self._compiled_fn()(*row_args, *shared_args)
                except Exception as e:  # any compiler failure (inductor, C++ or Triton toolchain)
                    self.compile_error = e
                    logger.warning(
                        f"torch.compile of {self.fn.__name__} failed; running it eagerly from now on "
                        f"(correct, slower; MODEL.LT_LOSS.COMPILE: False skips the attempt): {e!r}"
                    )
            return self.eager(row_args, shared_args, num_rows, num_cols, device)

    def _compiled_fn(self):
        if self._compiled is None:
            # fullgraph: a graph break or the recompilation limit raises (and falls back to eager,
            # with the warning) instead of silently running a slow half-compiled kernel.
            # dynamic_threads: the code reads the thread count at run time; otherwise inductor bakes
            # in the count at compile time, and its on-disk cache serves that code to processes
            # with other counts (a kernel first compiled under 1 thread stays serial).
            self._compiled = torch.compile(self.fn, fullgraph=True, dynamic=True,
                                           options={"cpp.dynamic_threads": True})
        return self._compiled

    def eager(self, row_args: Sequence, shared_args: Sequence, num_rows: int, num_cols: int, device):
        """The same function over row blocks, in order, so the result does not depend on the
        thread count."""
        block = _BLOCK_ELEMENTS if device.type == "cpu" else _ACCELERATOR_BLOCK_ELEMENTS
        step = max(1, block // max(num_cols, 1))
        blocks = [
            self.fn(*(None if a is None else a[start : start + step] for a in row_args), *shared_args)
            for start in range(0, max(num_rows, 1), step)
        ]
        return tuple(
            sum(outs[1:], outs[0]) if outs[0].dim() == 0 else torch.cat(outs) for outs in zip(*blocks)
        )

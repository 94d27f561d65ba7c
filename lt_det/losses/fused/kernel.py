"""Runs a fused loss kernel compiled with ``torch.compile``, and hands its gradient to autograd.

A kernel is a pure function of named tensors that returns ``(loss_sum, grad)``: a 0-d float64 sum
of the loss terms and their (R, L) gradient, computed in one pass. Compiled (inductor: vectorised
C++ with OpenMP on CPU, Triton on CUDA), one kernel reads the logits once and writes the gradient
once; the reference implementations in autograd walk a dozen (R, L) temporaries (at LVIS scale
R x L = 9.9 M elements) forward and again backward.

Every argument of a kernel that can change between calls is a tensor, never a Python float or
int: dynamo guards on a Python scalar and recompiles, but inductor's on-disk FX-graph cache can
serve the graph compiled for an earlier value (measured on torch 2.14.1: the focal kernel compiled
for gamma = 2 was reused for gamma = 0.5, a loss 34% off). Tensors are graph inputs, so one
compiled graph is right for every value. ``dynamic=True`` compiles one graph for every R (the RoI
count changes between steps). A kernel costs a few seconds on first use per process and graph
variant (inductor's on-disk cache makes later processes faster).

When compilation fails (e.g. no C++ compiler) the kernel warns once and runs the same function
uncompiled: correct, with the memory of eager PyTorch.
"""
import logging
from typing import Callable

import torch
from torch.autograd.function import once_differentiable

logger = logging.getLogger(__name__)

_kernels = []  # every FusedKernel, for compile_failures()


def compiled_calls() -> int:
    """Calls of all fused kernels answered by compiled code so far in this process."""
    return sum(k.compiled_calls for k in _kernels)


def compile_failures() -> dict:
    """{kernel function name: exception} of the kernels that fell back to running uncompiled."""
    return {k.fn.__name__: k.compile_error for k in _kernels if k.compile_error is not None}


class FusedKernel:
    """``fn(**tensors) -> tuple of tensors``, compiled on first call."""

    def __init__(self, fn: Callable):
        self.fn = fn
        self._compiled = None
        self.compile_error = None  # the exception that made this kernel fall back to eager
        self.compiled_calls = 0  # calls answered by the compiled code (tests check it ran)
        _kernels.append(self)

    def __call__(self, **kwargs):
        device = next(v.device for v in kwargs.values() if isinstance(v, torch.Tensor))
        # The kernels compute in fp32 whatever the caller's autocast state; switching it off also
        # keeps that state out of the compiled graph's guards (fewer recompilations).
        with torch.autocast(device.type, enabled=False):
            if self.compile_error is None:
                try:
                    out = self._compiled_fn()(**kwargs)
                    self.compiled_calls += 1
                    return out
                except Exception as e:  # any compiler failure (inductor, C++ or Triton toolchain)
                    self.compile_error = e
                    logger.warning(
                        f"torch.compile of {self.fn.__name__} failed; running it uncompiled from now on "
                        f"(correct, slower; MODEL.LT_LOSS.IMPLEMENTATION: reference skips the fused "
                        f"kernels): {e!r}"
                    )
            return self.fn(**kwargs)

    def _compiled_fn(self):
        if self._compiled is None:
            # fullgraph: a graph break or the recompilation limit raises (and falls back with the
            # warning) instead of silently running a slow half-compiled kernel.
            # dynamic_threads: the code reads the thread count at run time; otherwise inductor bakes
            # in the count at compile time, and its on-disk cache serves that code to processes
            # with other counts (a kernel first compiled under 1 thread stays serial).
            self._compiled = torch.compile(self.fn, fullgraph=True, dynamic=True,
                                           options={"cpp.dynamic_threads": True})
        return self._compiled


class PrecomputedGradient(torch.autograd.Function):
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

"""The fused kernels as kernels: compiled equals uncompiled on mask combinations no single loss
uses, a compiler failure falls back to the uncompiled function with a warning, one backward pass
per forward, keyed random numbers, and one compiled graph for every RoI count."""
import logging

import pytest
import torch

from lt_det.losses import fused
from lt_det.losses.fused import kernel as kernels
from lt_det.losses.fused.binary import KERNELS as BINARY_KERNELS

R, L = 101, 9


def binary_gumbel(logits, gt):
    ignore = (torch.arange(7) % 3 == 0).float()  # the loss uses 7 of the 9 columns
    return fused.weighted_binary_loss(logits, gt, activation="gumbel", num_columns=7, ignore_cols=ignore,
                                      logit_shift=torch.linspace(-1, 1, 7))


def binary_drop(logits, gt):
    fg = (gt < 4).float()
    drop = fused.RandomDrop(rows=1.0 - fg, ratio=torch.tensor(0.3), keys=torch.tensor([12345, 678]))
    ignore_full = (torch.arange(R * L).reshape(R, L) % 5 != 0).float()
    return fused.weighted_binary_loss(logits, gt, num_columns=8, ignore_cols=torch.linspace(0, 1, 8).round(),
                                      ignore_rows=fg, ignore_full=ignore_full, drop=drop,
                                      row_weights=torch.linspace(0.5, 2, R))


def binary_focal(logits, gt):
    return fused.weighted_binary_loss(logits, gt, activation="focal", focal=fused.Focal(2.0, 0.25), num_columns=8,
                                      shift_rows=(gt % 2).float(), logit_shift=torch.linspace(-2, 2, 8))


def grouped(logits, gt):
    weights = torch.linspace(0.1, 1.0, len(gt))
    groups = [fused.SoftmaxGroup(0, 5, gt.clamp(max=4), weights), fused.SoftmaxGroup(5, 4, gt % 4, weights.flip(0))]
    return fused.grouped_softmax_ce(logits, groups)


def softmax_removal(logits, gt):
    removal = fused.RandomRemoval(rows=(gt % 2).float(), cols=(torch.arange(L) < 6).float(), prob=0.5,
                                  keys=torch.tensor([3, 4]))
    return fused.softmax_ce(logits, gt, logit_shift=torch.linspace(0, 1, L), removal=removal)


def seesaw(logits, gt):
    return fused.seesaw_class_ce(logits, gt, torch.linspace(0.1, 1.0, R), torch.arange(L).float(), p=0.8, q=2.0)


LOSSES = [binary_gumbel, binary_drop, binary_focal, grouped, softmax_removal, seesaw]


def run(loss_fn, logits, gt):
    z = logits.clone().requires_grad_()
    value = loss_fn(z, gt)
    value.backward()
    return value.detach(), z.grad


@pytest.fixture
def inputs():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(R, L, generator=gen) * 4, torch.randint(0, 8, (R,), generator=gen)


@pytest.mark.parametrize("loss_fn", LOSSES)
def test_compiled_kernel_equals_uncompiled(loss_fn, inputs, monkeypatch):
    before = fused.compiled_calls()
    compiled = run(loss_fn, *inputs)
    assert fused.compiled_calls() > before, "the compiled kernel did not run"
    for kernel in kernels._kernels:
        monkeypatch.setattr(kernel, "compile_error", RuntimeError("uncompiled for this test"))
    eager = run(loss_fn, *inputs)
    # Same formulas, same random numbers; only the vectorised transcendental functions and the
    # summation order may differ in the last bits.
    torch.testing.assert_close(compiled[0], eager[0], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(compiled[1], eager[1], rtol=1e-5, atol=1e-6)  # |grad| <= 1: a few ulps


def test_a_compiler_failure_falls_back_to_uncompiled_with_a_warning(inputs, monkeypatch, caplog):
    def no_compiler(fn, **kwargs):
        def fail(*args, **kw):
            raise RuntimeError("no C++ compiler")

        return fail

    expected = run(binary_drop, *inputs)  # compiled
    monkeypatch.setattr(kernels, "_kernels", [])
    kernel = kernels.FusedKernel(BINARY_KERNELS["sigmoid"].fn)
    monkeypatch.setattr(torch, "compile", no_compiler)
    monkeypatch.setitem(BINARY_KERNELS, "sigmoid", kernel)
    with caplog.at_level(logging.WARNING, logger="lt_det.losses.fused.kernel"):
        value, grad = run(binary_drop, *inputs)
    assert isinstance(kernel.compile_error, RuntimeError) and kernel.compiled_calls == 0
    assert kernels.compile_failures() == {"_sigmoid_kernel": kernel.compile_error}
    assert "no C++ compiler" in caplog.text and "MODEL.LT_LOSS.IMPLEMENTATION" in caplog.text
    torch.testing.assert_close(value, expected[0], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grad, expected[1], rtol=1e-5, atol=1e-6)


def test_random_terms_change_with_the_keys_and_repeat_under_manual_seed(inputs):
    def drop_loss(keys):
        fg = torch.zeros(R)
        drop = fused.RandomDrop(rows=1.0 - fg, ratio=torch.tensor(0.5), keys=keys)
        return fused.weighted_binary_loss(inputs[0], inputs[1], num_columns=8, ignore_cols=torch.ones(8),
                                          ignore_rows=fg, drop=drop)

    torch.manual_seed(7)
    first = drop_loss(fused.draw_keys("cpu"))
    torch.manual_seed(7)
    assert drop_loss(fused.draw_keys("cpu")) == first
    assert drop_loss(fused.draw_keys("cpu")) != first


def test_a_second_backward_is_refused():
    z = torch.randn(4, 3, requires_grad=True)
    value = fused.weighted_binary_loss(z, torch.tensor([0, 1, 2, 3]))
    value.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="one backward pass"):
        value.backward()


def test_a_new_roi_count_does_not_recompile():
    from torch._dynamo.utils import counters

    gen = torch.Generator().manual_seed(1)

    def step(num_rows):
        logits = torch.randn(num_rows, L, generator=gen)
        return run(binary_focal, logits, torch.randint(0, 8, (num_rows,), generator=gen))

    focal = BINARY_KERNELS["focal"]
    step(40)
    graphs, calls = counters["stats"]["unique_graphs"], focal.compiled_calls
    assert graphs > 0 and calls > 0, "the focal kernel did not run compiled"
    step(57)
    step(131)
    assert focal.compiled_calls == calls + 2  # both answered by compiled code ...
    assert counters["stats"]["unique_graphs"] == graphs  # ... with no new graph

"""The fused kernels: compiled and eager give the same value and gradient, whatever the blocking and
threading; a compiler failure falls back to eager; one backward pass per forward."""
import logging

import pytest
import torch

import lt_det.losses.kernels as kernels
from lt_det.losses.counter_rng import draw_keys
from lt_det.losses.functional import (
    GUMBEL,
    SIGMOID,
    RandomDrop,
    RandomRemoval,
    SoftmaxGroup,
    grouped_softmax_ce,
    seesaw_class_ce,
    sigmoid_focal,
    softmax_ce,
    weighted_binary_loss,
)

R, L = 101, 9


def binary_gumbel(logits, gt):
    ignore = (torch.arange(7) % 3 == 0).float()  # the loss uses 7 of the 9 columns
    return weighted_binary_loss(logits, gt, 7, GUMBEL, ignore_cols=ignore, logit_shift=torch.linspace(-1, 1, 7))


def binary_drop(logits, gt):
    fg = (gt < 4).float()
    drop = RandomDrop(rows=1.0 - fg, ratio=torch.tensor(0.3), keys=torch.tensor([12345, 678]))
    ignore_full = (torch.arange(R * L).reshape(R, L) % 5 != 0).float()
    return weighted_binary_loss(logits, gt, 8, SIGMOID, ignore_cols=torch.linspace(0, 1, 8).round(), ignore_rows=fg,
                                ignore_full=ignore_full, drop=drop, row_weights=torch.linspace(0.5, 2, R))


def binary_focal(logits, gt):
    return weighted_binary_loss(logits, gt, 8, sigmoid_focal(0.25, 2.0), shift_rows=(gt % 2).float(),
                                logit_shift=torch.linspace(-2, 2, 8))


def grouped(logits, gt):
    weights = torch.linspace(0.1, 1.0, len(gt))
    groups = [SoftmaxGroup(0, 5, gt.clamp(max=4), weights), SoftmaxGroup(5, 4, gt % 4, weights.flip(0))]
    return grouped_softmax_ce(logits, groups)


def softmax_removal(logits, gt):
    removal = RandomRemoval(rows=(gt % 2).float(), cols=(torch.arange(L) < 6).float(), prob=0.5,
                            keys=torch.tensor([3, 4]))
    return softmax_ce(logits, gt, logit_shift=torch.linspace(0, 1, L), removal=removal)


def seesaw(logits, gt):
    return seesaw_class_ce(logits, gt, torch.linspace(0.1, 1.0, R), torch.arange(L).float(), p=0.8, q=2.0)


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
def test_eager_blocks_and_threads_do_not_change_the_result(loss_fn, inputs, monkeypatch):
    monkeypatch.setattr(kernels, "_compile", False)
    results = []
    for block_elements, threads in [(10**9, 1), (L * 4, 1), (L * 4, 3)]:
        monkeypatch.setattr(kernels, "_BLOCK_ELEMENTS", block_elements)
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            results.append(run(loss_fn, *inputs))
        finally:
            torch.set_num_threads(previous)
    for value, grad in results[1:]:
        torch.testing.assert_close(value, results[0][0], rtol=1e-6, atol=0)
        torch.testing.assert_close(grad, results[0][1], rtol=0, atol=0)


@pytest.mark.parametrize("loss_fn", LOSSES)
def test_compiled_kernel_equals_eager(loss_fn, inputs, monkeypatch):
    monkeypatch.setattr(kernels, "_compile", False)
    eager = run(loss_fn, *inputs)
    monkeypatch.setattr(kernels, "_compile", True)
    compiled = run(loss_fn, *inputs)
    # Same formulas, same random numbers; only the vectorised transcendental functions and the
    # summation order may differ in the last bits.
    torch.testing.assert_close(compiled[0], eager[0], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(compiled[1], eager[1], rtol=1e-5, atol=1e-6)  # |grad| <= 1: a few ulps
    used = [k for k in kernels._kernels if k._compiled]
    assert used and all(k.compile_error is None for k in used)


def test_a_compiler_failure_falls_back_to_eager_with_a_warning(inputs, monkeypatch, caplog):
    def no_compiler(fn, **kwargs):
        def fail(*args, **kw):
            raise RuntimeError("no C++ compiler")

        return fail

    monkeypatch.setattr(kernels, "_kernels", [])
    kernel = kernels.FusedKernel(SIGMOID.kernel.fn)
    monkeypatch.setattr(torch, "compile", no_compiler)
    monkeypatch.setattr(kernels, "_compile", True)
    monkeypatch.setattr(SIGMOID, "kernel", kernel)
    with caplog.at_level(logging.WARNING, logger="lt_det.losses.kernels"):
        value, grad = run(binary_drop, *inputs)
    assert isinstance(kernel.compile_error, RuntimeError)
    assert kernels.compile_failures() == {"_sigmoid_kernel": kernel.compile_error}
    assert "no C++ compiler" in caplog.text and "MODEL.LT_LOSS.COMPILE" in caplog.text
    monkeypatch.setattr(kernels, "_compile", False)
    expected = run(binary_drop, *inputs)
    torch.testing.assert_close(value, expected[0], rtol=0, atol=0)
    torch.testing.assert_close(grad, expected[1], rtol=0, atol=0)


def test_random_terms_change_with_the_keys_and_repeat_under_manual_seed(inputs):
    def drop_loss(keys):
        fg = torch.zeros(R)
        drop = RandomDrop(rows=1.0 - fg, ratio=torch.tensor(0.5), keys=keys)
        return weighted_binary_loss(inputs[0], inputs[1], 8, ignore_cols=torch.ones(8), ignore_rows=fg, drop=drop)

    torch.manual_seed(7)
    first = drop_loss(draw_keys("cpu"))
    torch.manual_seed(7)
    assert drop_loss(draw_keys("cpu")) == first
    assert drop_loss(draw_keys("cpu")) != first


def test_a_second_backward_is_refused():
    z = torch.randn(4, 3, requires_grad=True)
    value = weighted_binary_loss(z, torch.tensor([0, 1, 2, 3]))
    value.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="one backward pass"):
        value.backward()


def test_a_new_roi_count_does_not_recompile(monkeypatch):
    from torch._dynamo.utils import counters

    monkeypatch.setattr(kernels, "_compile", True)
    gen = torch.Generator().manual_seed(1)

    def step(num_rows):
        logits = torch.randn(num_rows, L, generator=gen)
        return run(binary_focal, logits, torch.randint(0, 8, (num_rows,), generator=gen))

    step(40)
    graphs = counters["stats"]["unique_graphs"]
    step(57)
    step(131)
    assert counters["stats"]["unique_graphs"] == graphs

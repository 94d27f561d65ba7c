"""The fused losses give the same value and gradient whatever their blocking and threading."""
import pytest
import torch

import lt_det.losses.functional as functional
from lt_det.losses.functional import GUMBEL, SoftmaxGroup, grouped_softmax_ce, weighted_binary_loss


def binary(logits, gt):
    ignore = (torch.arange(7) % 3 == 0).float()  # the loss uses 7 of the 9 columns
    return weighted_binary_loss(logits, gt, 7, GUMBEL, ignore=lambda rows: ignore, logit_shift=torch.linspace(-1, 1, 7))


def grouped(logits, gt):
    weights = torch.linspace(0.1, 1.0, len(gt))
    groups = [SoftmaxGroup(0, 5, gt.clamp(max=4), weights), SoftmaxGroup(5, 4, gt % 4, weights.flip(0))]
    return grouped_softmax_ce(logits, groups)


@pytest.mark.parametrize("loss_fn", [binary, grouped])
def test_blocks_and_threads_do_not_change_the_result(loss_fn, monkeypatch):
    torch.manual_seed(0)
    logits = torch.randn(101, 9) * 4
    gt = torch.randint(0, 8, (101,))
    results = []
    for block_elements, threads in [(10**9, 1), (9 * 4, 1), (9 * 4, 3)]:
        monkeypatch.setattr(functional, "_BLOCK_ELEMENTS", block_elements)
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            z = logits.clone().requires_grad_()
            value = loss_fn(z, gt)
            value.backward()
        finally:
            torch.set_num_threads(previous)
        results.append((value.detach(), z.grad))
    for value, grad in results[1:]:
        torch.testing.assert_close(value, results[0][0], rtol=1e-6, atol=0)
        torch.testing.assert_close(grad, results[0][1], rtol=0, atol=0)


def test_a_second_backward_is_refused():
    z = torch.randn(4, 3, requires_grad=True)
    value = weighted_binary_loss(z, torch.tensor([0, 1, 2, 3]))
    value.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="one backward pass"):
        value.backward()

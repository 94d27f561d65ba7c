"""GRW, DisAlign's stage-2 loss: hand-worked weights, the weighted mean, reductions, fused path."""
import math

import pytest
import torch
import torch.nn.functional as F

from lt_det.losses.grw import GeneralisedReweightingCE, grw_weights


def test_weights_hand_worked():
    # n = (1, 3): r = (1/4, 3/4); ρ = 1: r^-1 = (4, 4/3), sum 16/3; times K / sum = 2 * 3/16: (3/2, 1/2)
    torch.testing.assert_close(grw_weights([1, 3], 1.0), torch.tensor([1.5, 0.5], dtype=torch.float64))
    # ρ = 0.5: r^-0.5 = (2, 2/√3); normalised to average 1
    w = torch.tensor([2.0, 2.0 / math.sqrt(3.0)], dtype=torch.float64)
    torch.testing.assert_close(grw_weights([1, 3], 0.5), w * 2 / w.sum())


def test_loss_is_the_weighted_mean_over_the_rois():
    loss = GeneralisedReweightingCE(num_classes=2, instance_count=[1, 3], rho=1.0)  # w = (1.5, 0.5, 1)
    logits = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    labels = torch.tensor([0, 1, 2])
    ce = F.cross_entropy(logits, labels, reduction="none")
    expected = (1.5 * ce[0] + 0.5 * ce[1] + 1.0 * ce[2]) / (1.5 + 0.5 + 1.0)
    torch.testing.assert_close(loss(logits, labels), expected)


def test_rho_zero_is_softmax_ce_with_its_gradient():
    loss = GeneralisedReweightingCE(num_classes=3, instance_count=[1, 10, 100], rho=0.0)
    logits = torch.randn(7, 4, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 3, 1, 0])
    ours = torch.autograd.grad(loss(logits, labels), logits)[0]
    ref = torch.autograd.grad(F.cross_entropy(logits, labels), logits)[0]
    torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("seed", [0, 1])
def test_fused_path_equals_the_reference(seed):
    g = torch.Generator().manual_seed(seed)
    loss = GeneralisedReweightingCE(num_classes=5, instance_count=[1, 2, 30, 400, 5000], rho=0.8)
    logits = torch.randn(64, 6, generator=g, requires_grad=True)
    labels = torch.randint(6, (64,), generator=g)
    ref = loss.loss(logits, labels)
    fused = loss.fused_loss(logits, labels)
    torch.testing.assert_close(fused, ref)
    torch.testing.assert_close(torch.autograd.grad(fused, logits)[0], torch.autograd.grad(ref, logits)[0])

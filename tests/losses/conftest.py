import pytest
import torch

from lt_det.losses import LTLoss


@pytest.fixture(params=["fused", "reference"])
def both_implementations(request, monkeypatch):
    """Runs a test once on each loss's fused path and once on its reference (``loss``), for every
    loss the test builds (a loss without a fused path runs its reference both times)."""
    monkeypatch.setattr(LTLoss, "uses_fused", lambda self, device: request.param == "fused" and self.has_fused_path())
    return request.param


def loss_and_grad(loss_module, logits, gt, **extras):
    """(loss value, d loss / d logits as nested lists) of an lt_det loss on fp32 logits."""
    z = torch.tensor(logits, dtype=torch.float32, requires_grad=True)
    loss = loss_module(z, torch.tensor(gt), **extras)
    loss.backward()
    return loss.item(), z.grad.tolist()


def assert_close_nested(actual, expected, tol=1e-5):
    for a_row, e_row in zip(actual, expected, strict=True):
        assert a_row == pytest.approx(e_row, abs=tol, rel=1e-4)


@pytest.fixture
def check():
    """check(loss_module, logits, gt, expected_loss, expected_grad, **extras)."""

    def run(loss_module, logits, gt, expected_loss, expected_grad, **extras):
        value, grad = loss_and_grad(loss_module, logits, gt, **extras)
        assert value == pytest.approx(expected_loss, rel=1e-5, abs=1e-6)
        assert_close_nested(grad, expected_grad)

    return run

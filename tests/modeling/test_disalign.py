"""DisAlign's calibration layer: hand-worked logits, identity at initialisation, background and
frozen classifier untouched, checkpoint compatibility."""
import math

import pytest
import torch
from torch import nn

from lt_det.modeling.cosine import CosineLinear
from lt_det.modeling.disalign import DisAlignLinear, replace_with_disalign

ROWS = torch.arange(2)  # 2 classes, background last


def base():
    """w_0 = (1, 0), w_1 = (0, 1), w_bg = (1, 1); biases (0, 0, 0.5): z = (x0, x1, x0 + x1 + 0.5)."""
    linear = nn.Linear(2, 3)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        linear.bias.copy_(torch.tensor([0.0, 0.0, 0.5]))
    return linear


def test_hand_worked_logits():
    layer = DisAlignLinear.from_linear(base(), class_rows=ROWS)
    with torch.no_grad():
        layer.logit_scale.copy_(torch.tensor([2.0, 0.5]))
        layer.logit_bias.copy_(torch.tensor([1.0, -1.0]))
        layer.confidence.weight.zero_()
        layer.confidence.bias.fill_(math.log(3.0))  # σ = 3 / 4
    x = torch.tensor([[2.0, 4.0]])  # z = (2, 4, 6.5)
    # s_0 = 3/4 (2 * 2 + 1) + 1/4 * 2 = 4.25; s_1 = 3/4 (0.5 * 4 - 1) + 1/4 * 4 = 1.75; s_bg = 6.5
    torch.testing.assert_close(layer(x), torch.tensor([[4.25, 1.75, 6.5]]))


def test_the_confidence_is_per_roi():
    layer = DisAlignLinear.from_linear(base(), class_rows=ROWS)
    with torch.no_grad():
        layer.logit_scale.fill_(0.0)
        layer.confidence.weight.copy_(torch.tensor([[1000.0, 0.0]]))  # σ = 1 when x0 > 0, 0 when x0 < 0
        layer.confidence.bias.zero_()
    out = layer(torch.tensor([[1.0, 3.0], [-1.0, 3.0]]))
    torch.testing.assert_close(out[:, :2], torch.tensor([[0.0, 0.0], [-1.0, 3.0]]))  # α z + β = 0, or z


def test_initialisation_is_the_identity_and_the_released_one():
    linear = base()
    layer = DisAlignLinear.from_linear(linear, class_rows=ROWS)
    x = torch.randn(5, 2)
    torch.testing.assert_close(layer(x), linear(x))
    assert torch.equal(layer.logit_scale, torch.ones(2)) and torch.equal(layer.logit_bias, torch.zeros(2))
    assert torch.equal(layer.confidence.bias, torch.zeros(1)) and 0 < layer.confidence.weight.abs().max() < 0.1


def test_a_frozen_classifier_gets_no_gradient_and_the_calibration_does():
    layer = DisAlignLinear.from_linear(base(), class_rows=ROWS)
    layer.weight.requires_grad_(False)
    layer.bias.requires_grad_(False)
    layer(torch.randn(4, 2)).sum().backward()
    assert layer.weight.grad is None and layer.bias.grad is None
    assert layer.logit_scale.grad.abs().sum() > 0 and layer.logit_bias.grad.abs().sum() > 0
    assert layer.confidence.weight.grad is not None


def test_loads_a_plain_linear_state_dict():
    layer = DisAlignLinear(2, 3, class_rows=ROWS)
    result = layer.load_state_dict(base().state_dict(), strict=False)
    assert sorted(result.missing_keys) == ["confidence.bias", "confidence.weight", "logit_bias", "logit_scale"]
    assert result.unexpected_keys == []


def test_replace_refuses_a_cosine_classifier():
    model = nn.Module()
    model.cls_score = CosineLinear(2, 3, temperature=20.0)
    with pytest.raises(TypeError, match="DisAlign needs 'cls_score' to be an nn.Linear, found CosineLinear"):
        replace_with_disalign(model, "cls_score", class_rows=ROWS)

"""LWS scales and τ-normalisation (Kang et al., ICLR 2020): the math on hand-made tensors."""
import pytest
import torch
from torch import nn

from lt_det.modeling.lws import LWSLinear, replace_with_lws
from lt_det.modeling.tau_norm import tau_normalize, tau_normalize_state_dict

C, D, L = 3, 5, 4  # 3 foreground classes, 5 features, C + 1 logits (softmax layout)
ROWS = torch.arange(C)  # the softmax layout: class c in row c, background last


def linear(seed=0):
    torch.manual_seed(seed)
    layer = nn.Linear(D, L)
    nn.init.normal_(layer.bias)
    return layer


# ---- LWS --------------------------------------------------------------------------------

def test_lws_starts_as_the_linear_layer():
    base = linear()
    x = torch.randn(6, D)
    torch.testing.assert_close(LWSLinear.from_linear(base, class_rows=ROWS)(x), base(x))


@pytest.mark.parametrize("scale_bias", [False, True])
def test_lws_scales_foreground_logits(scale_bias):
    base = linear()
    lws = LWSLinear.from_linear(base, class_rows=ROWS, scale_bias=scale_bias)
    s = torch.tensor([2.0, 0.5, -1.0])
    with torch.no_grad():
        lws.scale.copy_(s)
    x = torch.randn(6, D)
    wx, b = x @ base.weight.T, base.bias
    z = lws(x)
    fg = s * (wx[:, :C] + b[:C]) if scale_bias else s * wx[:, :C] + b[:C]
    torch.testing.assert_close(z[:, :C], fg)
    torch.testing.assert_close(z[:, C:], wx[:, C:] + b[C:])  # background row: scale 1


def test_lws_on_frozen_classifier_trains_only_scales():
    lws = LWSLinear.from_linear(linear(), class_rows=ROWS)
    lws.weight.requires_grad_(False)
    lws.bias.requires_grad_(False)
    lws(torch.randn(6, D)).sum().backward()
    assert lws.scale.grad is not None and lws.scale.grad.abs().sum() > 0
    assert lws.weight.grad is None and lws.bias.grad is None


def test_lws_loads_a_plain_linear_state_dict():
    base = linear(1)
    lws = LWSLinear(D, L, class_rows=ROWS)
    result = lws.load_state_dict(base.state_dict(), strict=False)
    assert result.missing_keys == ["scale"] and result.unexpected_keys == []
    assert torch.equal(lws.weight, base.weight) and torch.equal(lws.scale, torch.ones(C))


def test_replace_with_lws_swaps_the_module_in_place():
    model = nn.Module()
    model.head = nn.Module()
    model.head.cls_score = base = linear()
    lws = replace_with_lws(model, "head.cls_score", class_rows=ROWS)
    assert model.head.cls_score is lws and lws.weight is base.weight
    with pytest.raises(TypeError, match="nn.Linear"):
        replace_with_lws(model, "head.cls_score", class_rows=ROWS)  # already wrapped
    with pytest.raises(ValueError, match="distinct rows"):
        LWSLinear(D, L, class_rows=torch.arange(L + 1))


# ---- τ-normalisation ----------------------------------------------------------------------

def test_tau_zero_is_identity():
    w = linear().weight.detach()
    assert torch.equal(tau_normalize(w, 0.0, ROWS), w)


def test_tau_one_gives_unit_foreground_rows_and_keeps_background():
    w = linear().weight.detach()
    out = tau_normalize(w, 1.0, ROWS)
    torch.testing.assert_close(out[:C].norm(dim=1), torch.ones(C))
    assert torch.equal(out[C:], w[C:])


def test_tau_half_on_hand_made_rows():
    w = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])  # norms 5, 0, 1; last row background
    out = tau_normalize(w, 0.5, class_rows=[0, 1])
    torch.testing.assert_close(out, torch.tensor([[3 / 5**0.5, 4 / 5**0.5], [0.0, 0.0], [1.0, 0.0]]))


def test_tau_normalize_state_dict_changes_only_the_classifier_weight():
    state = {
        "roi_heads.box_predictor.cls_score.weight": linear().weight.detach(),
        "roi_heads.box_predictor.cls_score.bias": torch.randn(L),
        "backbone.conv.weight": torch.randn(2, 2),
    }
    out = tau_normalize_state_dict(state, 1.0, ROWS)
    assert out["roi_heads.box_predictor.cls_score.bias"] is state["roi_heads.box_predictor.cls_score.bias"]
    assert out["backbone.conv.weight"] is state["backbone.conv.weight"]
    torch.testing.assert_close(out["roi_heads.box_predictor.cls_score.weight"][:C].norm(dim=1), torch.ones(C))
    with pytest.raises(KeyError, match="not in the checkpoint"):
        tau_normalize_state_dict({"backbone.conv.weight": torch.zeros(1)}, 1.0, ROWS)
    with pytest.raises(ValueError, match="distinct rows of a classifier with 4 rows"):
        tau_normalize(torch.zeros(L, D), 1.0, torch.arange(9))


def test_class_rows_other_than_the_first_c():
    # BAGS-like layout: rows [bg, others, class 1, class 0]; only the class rows change.
    w = torch.tensor([[3.0, 4.0], [6.0, 8.0], [0.0, 2.0], [5.0, 12.0]])
    out = tau_normalize(w, 1.0, class_rows=[3, 2])
    torch.testing.assert_close(out, torch.tensor([[3.0, 4.0], [6.0, 8.0], [0.0, 1.0], [5 / 13, 12 / 13]]))
    lws = LWSLinear(2, 4, class_rows=[3, 2])
    with torch.no_grad():
        lws.scale.copy_(torch.tensor([2.0, 3.0]))  # class 0 (row 3) x2, class 1 (row 2) x3
    assert lws.full_scale().tolist() == [1.0, 1.0, 3.0, 2.0]

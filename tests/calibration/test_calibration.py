"""The calibration stage: hand-worked scores of each method, reductions to the released formulas,
the τ-norm background rule, identity settings and bad input.

Scores are (R, K + 1), background last. Expected values are worked out in the comments.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lt_det.calibration import build_calibration, get_calibration_class
from lt_det.calibration.fracal import FRACAL
from lt_det.calibration.logit_adjustment import LogitAdjustment, label_prior
from lt_det.calibration.norcal import NorCal, norcal_weights
from lt_det.calibration.tau_norm import TauNormalization
from lt_det.data.class_stats import ClassStats, get_class_stats
from lt_det.losses.gumbel_ce import GumbelCE
from lt_det.losses.sigmoid_ce import SigmoidCE
from lt_det.losses.softmax_ce import SoftmaxCE
from lt_det.modeling.cosine import CosineLinear
from lt_det.modeling.fast_rcnn import read_class_stats
from lt_det.modeling.lws import LWSLinear
from lt_det.modeling.tau_norm import tau_normalize

SOFTMAX = SoftmaxCE(num_classes=2)
SIGMOID = SigmoidCE(num_classes=2)
GUMBEL = GumbelCE(num_classes=2)
P = torch.tensor([[0.2, 0.3, 0.5]], dtype=torch.float64)  # one softmax RoI: classes 0, 1, background


def stats(image_count, instance_count, num_images):
    return ClassStats(np.array(image_count), np.array(instance_count), np.array(["r"] * len(image_count)), num_images)


def calibrate(calibration, scores, loss, logits=None, classifier=None):
    return calibration(scores, logits, loss, classifier)


# ---------------------------------------------------------------- NorCal


def test_norcal_softmax_hand_worked():
    # N = (1, 4), γ = 1: 1 / a = (1, 1/4); (0.2, 0.3 / 4, 0.5) = (0.2, 0.075, 0.5), sum 0.775:
    # (8/31, 3/31, 20/31)
    out = calibrate(NorCal(norcal_weights(torch.tensor([1.0, 4.0]), 1.0)), P, SOFTMAX)
    torch.testing.assert_close(out, torch.tensor([[8 / 31, 3 / 31, 20 / 31]], dtype=torch.float64))


def test_norcal_without_renormalisation_only_rescales_the_classes():
    out = calibrate(NorCal(norcal_weights(torch.tensor([1.0, 4.0]), 1.0), renorm=False), P, SOFTMAX)
    torch.testing.assert_close(out, torch.tensor([[0.2, 0.075, 0.5]], dtype=torch.float64))


def test_norcal_on_a_softmax_is_the_released_exps_rule():
    """Released default: exp(z), class columns times N_c^-γ, divided by the row sum, which is the
    softmax of z with -γ log N_c added to each class logit."""
    z = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]], dtype=torch.float64)
    counts, gamma = torch.tensor([3.0, 50.0]), 0.7
    expected = F.softmax(z - torch.cat([gamma * counts.double().log(), torch.zeros(1, dtype=torch.float64)]), dim=1)
    out = calibrate(NorCal(norcal_weights(counts, gamma)), F.softmax(z, dim=1), SOFTMAX)
    torch.testing.assert_close(out, expected)


def test_norcal_effective_number_weights():
    # (1 - β) / (1 - β^N) with β = 0.5, N = (1, 2): (0.5 / 0.5, 0.5 / 0.75) = (1, 2/3)
    torch.testing.assert_close(norcal_weights(torch.tensor([1.0, 2.0]), 0.5, "effective_number"),
                               torch.tensor([1.0, 2 / 3], dtype=torch.float64))
    with pytest.raises(ValueError, match="0 < γ < 1"):
        norcal_weights(torch.tensor([1.0]), 1.5, "effective_number")


def test_norcal_independent_scores_are_divided_by_a():
    scores = torch.tensor([[0.2, 0.3, 0.0]])
    out = calibrate(NorCal(norcal_weights(torch.tensor([1.0, 4.0]), 1.0)), scores, SIGMOID)
    torch.testing.assert_close(out, torch.tensor([[0.2, 0.075, 0.0]]))


# ---------------------------------------------------------------- logit adjustment


def test_logit_adjustment_softmax_hand_worked():
    # n = (1, 3): π = (1/4, 3/4), τ = 1: weights π^-1 = (4, 4/3); (0.8, 0.4, 0.5) / 1.7
    prior = label_prior(stats([1, 1], [1, 3], 4), "instance")
    out = calibrate(LogitAdjustment(prior, tau=1.0), P, SOFTMAX)
    torch.testing.assert_close(out, torch.tensor([[8 / 17, 4 / 17, 5 / 17]], dtype=torch.float64))


def test_logit_adjustment_on_a_softmax_subtracts_tau_log_prior_from_the_class_logits():
    z = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    prior, tau = torch.tensor([0.1, 0.9], dtype=torch.float64), 0.6
    expected = F.softmax(z - tau * torch.cat([prior.log(), torch.zeros(1, dtype=torch.float64)]), dim=1)
    torch.testing.assert_close(calibrate(LogitAdjustment(prior, tau), F.softmax(z, dim=1), SOFTMAX), expected)


@pytest.mark.parametrize("loss, expected", [
    # z = 0 for both classes, π = (1/4, 3/4), τ = 1: z' = (log 4, log 4/3)
    (SIGMOID, [4 / 5, 4 / 7]),  # σ(log 4) = 4/5, σ(log 4/3) = (4/3) / (7/3)
    (GUMBEL, [math.exp(-1 / 4), math.exp(-3 / 4)]),  # exp(-exp(-z')): exp(-1/4), exp(-3/4)
])
def test_logit_adjustment_independent_scores(loss, expected):
    p0 = 0.5 if loss is SIGMOID else math.exp(-1.0)  # the score of logit 0
    scores = torch.tensor([[p0, p0, 0.0]])
    out = calibrate(LogitAdjustment(torch.tensor([0.25, 0.75]), tau=1.0), scores, loss)
    torch.testing.assert_close(out, torch.tensor([expected + [0.0]]))


def test_label_prior_from_image_counts():
    torch.testing.assert_close(label_prior(stats([2, 6], [10, 10], 8), "image"),
                               torch.tensor([0.25, 0.75], dtype=torch.float64))
    with pytest.raises(ValueError, match="PRIOR"):
        label_prior(stats([1], [1], 1), "roi")


# ---------------------------------------------------------------- FRACAL


def fracal(lam=1.0):
    # K = 2, M = 4 images, N = (1, 2): u = -log10(2 N / 4) = (log10 2, 0); D = (1, 2)
    return FRACAL(torch.tensor([1.0, 2.0]), 4, torch.tensor([1.0, 2.0]), fractal_lambda=lam)


def test_fracal_softmax_hand_worked():
    # λ = 2: weights e^u / D^2 = (e^(log10 2), 1/4); (0.2 e^(log10 2), 0.075, 0.5), normalised
    a = 0.2 * math.exp(math.log10(2.0))
    row = torch.tensor([[a, 0.075, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(calibrate(fracal(2.0), P, SOFTMAX), row / row.sum())


def test_fracal_softmax_is_the_released_rule():
    """Released: softmax(z + u) (0 for the background), class c divided by D_c^λ, normalised."""
    z = torch.tensor([[1.0, -2.0, 0.5], [0.0, 2.0, 1.0]], dtype=torch.float64)
    u = torch.tensor([math.log10(2.0), 0.0, 0.0], dtype=torch.float64)
    d_pow = torch.tensor([1.0, 2.0 ** 1.5, 1.0], dtype=torch.float64)
    released = F.softmax(z + u, dim=1) / d_pow
    released = released / released.sum(dim=1, keepdim=True)
    torch.testing.assert_close(calibrate(fracal(1.5), F.softmax(z, dim=1), SOFTMAX), released)


def test_fracal_sigmoid_hand_worked():
    # z = 0, p = 1/2; λ = 1: D / ΣD = (1/3, 2/3), f = -log10(2 D / ΣD) = (log10 1.5, -log10(4/3));
    # u + f = (log10 2 + log10 1.5, -log10(4/3)) = (log10 3, -log10(4/3)); p̃ = p σ(u + f)
    def sigmoid(x):
        return 1.0 / (1.0 + math.exp(-x))

    out = calibrate(fracal(1.0), torch.tensor([[0.5, 0.5, 0.0]]), SIGMOID)
    expected = [0.5 * sigmoid(math.log10(3.0)), 0.5 * sigmoid(-math.log10(4 / 3)), 0.0]
    torch.testing.assert_close(out, torch.tensor([expected]))


def test_fracal_rejects_dimensions_of_another_class_count():
    with pytest.raises(ValueError, match="3 fractal dimensions for 2 classes"):
        FRACAL(torch.tensor([1.0, 2.0]), 4, torch.ones(3))


# ---------------------------------------------------------------- τ-normalisation


def classifier():
    """Rows w_0 = (3, 4) (norm 5), w_1 = (0, 2) (norm 2), w_bg = (1, 1); biases (0.5, -0.5, 0.1)."""
    linear = nn.Linear(2, 3)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[3.0, 4.0], [0.0, 2.0], [1.0, 1.0]]))
        linear.bias.copy_(torch.tensor([0.5, -0.5, 0.1]))
    return linear


# x = (1, 1): z = (7.5, 1.5, 2.1); τ = 1: z̃ = (7 / 5 + 0.5, 2 / 2 - 0.5, 2.1) = (1.9, 0.5, 2.1).
# x = (-1, -1): z = (-6.5, -2.5, -1.9), which the model calls background: its scores stay.
X = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])


def test_tau_norm_hand_worked_with_the_background_rule():
    linear = classifier()
    logits = linear(X).detach()
    out = TauNormalization(tau=1.0)(SOFTMAX.scores(logits), logits, SOFTMAX, linear)
    torch.testing.assert_close(out[0], F.softmax(torch.tensor([1.9, 0.5, 2.1]), dim=0))
    torch.testing.assert_close(out[1], F.softmax(torch.tensor([-6.5, -2.5, -1.9]), dim=0))


def test_tau_norm_equals_the_normalised_checkpoint_where_the_model_sees_an_object():
    linear = classifier()
    logits = linear(X).detach()
    tau = 0.7
    normalized = nn.Linear(2, 3)
    with torch.no_grad():
        normalized.weight.copy_(tau_normalize(linear.weight, tau, SOFTMAX.classifier_rows()))
        normalized.bias.copy_(linear.bias)
    out = TauNormalization(tau)(SOFTMAX.scores(logits), logits, SOFTMAX, linear)
    torch.testing.assert_close(out[0], SOFTMAX.scores(normalized(X).detach())[0])


def test_tau_norm_of_an_lws_classifier_uses_the_scaled_rows():
    # s = (2, 1) on the weight rows: z_0 = 2 * 7 + 0.5 = 14.5, effective row (6, 8) of norm 10:
    # z̃_0 = 14 / 10 + 0.5 = 1.9 (τ = 1 removes the scale), z̃_1 = 0.5 as before
    lws = LWSLinear.from_linear(classifier(), class_rows=SOFTMAX.classifier_rows())
    with torch.no_grad():
        lws.scale.copy_(torch.tensor([2.0, 1.0]))
    logits = lws(X[:1]).detach()
    torch.testing.assert_close(logits[0, 0], torch.tensor(14.5))
    out = TauNormalization(1.0)(SOFTMAX.scores(logits), logits, SOFTMAX, lws)
    torch.testing.assert_close(out[0], F.softmax(torch.tensor([1.9, 0.5, 2.1]), dim=0))


def test_tau_norm_of_a_cosine_classifier_is_refused():
    cosine = CosineLinear(2, 3, temperature=20.0)
    logits = torch.zeros(1, 3)
    with pytest.raises(TypeError, match="cosine"):
        TauNormalization(1.0)(SOFTMAX.scores(logits), logits, SOFTMAX, cosine)


# ---------------------------------------------------------------- build: identity, bad input


@pytest.mark.parametrize("method, key, value", [
    ("logit_adjustment", "TAU", 0.0), ("norcal", "GAMMA", 0.0), ("tau_norm", "TAU", 0.0)])
def test_identity_settings_build_no_calibration(quick_cfg, method, key, value):
    cfg = quick_cfg("TEST.CALIBRATION.METHOD", method, f"TEST.CALIBRATION.{method.upper()}.{key}", value)
    assert build_calibration(cfg, stats([1] * 12, [1] * 12, 12)) is None
    cfg = quick_cfg("TEST.CALIBRATION.METHOD", method, f"TEST.CALIBRATION.{method.upper()}.{key}", 0.5)
    assert isinstance(build_calibration(cfg, stats([1] * 12, [1] * 12, 12)), get_calibration_class(method))


def test_unknown_method_lists_the_registered_ones(quick_cfg):
    cfg = quick_cfg("TEST.CALIBRATION.METHOD", "norcall")
    with pytest.raises(KeyError, match="Unknown calibration 'norcall'.*Registered calibrations: none, fracal, logit_adjustment, norcal"):
        build_calibration(cfg, None)


def test_a_method_needing_statistics_names_the_training_set(quick_cfg):
    cfg = quick_cfg("TEST.CALIBRATION.METHOD", "norcal", "TEST.CALIBRATION.NORCAL.GAMMA", 0.5)
    with pytest.raises(ValueError, match="needs the per-class training statistics of DATASETS.TRAIN"):
        build_calibration(cfg, None)


def test_fracal_without_a_dimensions_file_needs_one_training_json(quick_cfg):
    # Two training sets: no single json to compute the dimensions from, and no file given.
    cfg = quick_cfg("TEST.CALIBRATION.METHOD", "fracal",
                    "DATASETS.TRAIN", "('synthetic_lt_train', 'synthetic_lt_train')")
    with pytest.raises(ValueError, match=r"DATASETS.TRAIN=\('synthetic_lt_train', 'synthetic_lt_train'\) is not one "
                                         r"dataset with a json_file.*tools/fractal_dimension.py"):
        build_calibration(cfg, read_class_stats(cfg))


def test_lazy_calibration_builds_what_the_config_keys_build(tiny_dataset_root):
    from lt_det.lazy import calibration

    built = calibration("norcal", "synthetic_lt_train", gamma=0.5, renorm=False)
    assert isinstance(built, NorCal) and built.renorm is False
    counts = torch.as_tensor(get_class_stats("synthetic_lt_train").image_count, dtype=torch.float64)
    torch.testing.assert_close(built.weights, counts.pow(-0.5).float())
    assert calibration("none") is None and calibration("norcal", "synthetic_lt_train") is None  # γ = 0
    with pytest.raises(KeyError, match="no key 'gama'; valid: \\['gamma', 'renorm', 'weighting'\\]"):
        calibration("norcal", "synthetic_lt_train", gama=0.5)

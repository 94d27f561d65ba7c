"""ACSL (Adaptive Class Suppression Loss) against its definition, written out element by element.

Shared example: K = 3 classes with LVIS groups (rare, common, frequent), K + 1 logits (background
last), R = 4 RoIs: two foreground, two background; reduction sum / R. With n_bg = 2 the released
background fractions (0.01, 0.1, 1.0) keep floor(0.02) = 0 rare rows, floor(0.2) = 0 common rows
and both rows for the frequent class, so the example is deterministic.
"""
import math

import pytest
import torch
from torch.nn import functional as F

import lt_det.losses.acsl  # noqa: F401  registers "acsl"
from lt_det.losses import build_loss
from lt_det.losses.acsl import AdaptiveClassSuppressionLoss as ACSL
from lt_det.losses.gumbel_ce import GumbelCE

from loss_reference import bce, dbce, gumbel_terms, onehot_row, sigmoid
from loss_stats_dataset import FREQUENCY as STATS_FREQUENCY
from loss_stats_dataset import NAME as STATS_DATASET
from loss_stats_dataset import NUM_CLASSES as STATS_K
from loss_stats_dataset import loss_cfg, no_stats_dataset

K = 3
GROUPS = ["r", "c", "f"]
LOGITS = [
    [2.0, 1.2, -1.0, 0.9],  # class 0: class 1 (sigma 0.77) and the bg column (sigma 0.71) reach 0.7
    [0.3, -0.5, -2.0, 2.5],  # class 2: only the bg column (sigma 0.92) reaches 0.7
    [1.5, 0.8, -0.2, 0.4],  # background: rare class 0 scores 0.82 but bg rows ignore scores
    [-1.0, 2.2, 0.6, -0.7],  # background: common class 1 scores 0.90, dropped likewise
]
GT = [0, 2, 3, 3]
R = len(GT)
XI = 0.7


def gumbel_cdf(z):
    """eta(clamp(z, -4, 10)), the Gumbel CDF of the training clamp."""
    return math.exp(-math.exp(-min(max(z, -4.0), 10.0)))


def acsl_weight(gt, logits, xi, groups, keep_group, prob=sigmoid):
    """w_ij from the definition: foreground rows keep the positive and every column whose score
    is >= xi; background rows keep the background column and the classes whose group is kept on
    every background row (``keep_group[g]`` in {0, 1}, the deterministic cases)."""

    def w(i, j):
        if gt[i] < K:
            return 1.0 if j == gt[i] or prob(logits[i][j]) >= xi else 0.0
        return 1.0 if j == K or keep_group[groups[j]] else 0.0

    return w


def weighted_binary(logits, gt, weight, activation="sigmoid"):
    """sum_ij w_ij l(z_ij, y_ij) / R and its gradient, y = onehot(gt, K + 1), from the scalar
    definitions in loss_reference."""
    total, grad = 0.0, []
    for i, row in enumerate(logits):
        y = onehot_row(gt[i], len(row))
        g_row = []
        for j, z in enumerate(row):
            if activation == "sigmoid":
                value, d = bce(z, y[j]), dbce(z, y[j])
            else:
                lp, ln, dp, dn = gumbel_terms(z)
                value, d = (lp, dp) if y[j] else (ln, dn)
            total += weight(i, j) * value
            g_row.append(weight(i, j) * d / len(logits))
        grad.append(g_row)
    return total / len(logits), grad


def build(**kwargs):
    kwargs.setdefault("frequency", GROUPS)
    return ACSL(num_classes=K, **kwargs)


# -- the formula by hand ---------------------------------------------------------------------


def test_acsl_by_hand_released_defaults(check):
    loss = build()
    weight = acsl_weight(GT, LOGITS, XI, GROUPS, {"r": 0, "c": 0, "f": 1})
    expected, grad = weighted_binary(LOGITS, GT, weight)
    # Foreground rows: the confusing negatives stay, the others are suppressed-ignored.
    assert grad[0][1] != 0 and grad[0][3] != 0 and grad[0][2] == 0
    assert grad[1][3] != 0 and grad[1][0] == 0 and grad[1][1] == 0
    # Background rows: frequent class + background column, whatever the scores.
    assert grad[2][0] == 0 and grad[3][1] == 0 and grad[2][2] != 0 and grad[3][3] != 0
    check(loss, LOGITS, GT, expected, grad)


def test_acsl_gumbel_thresholds_the_gumbel_cdf(check):
    # eta(0.9) = 0.666 < 0.7 <= sigma(0.9) = 0.711: the sigmoid version keeps (0, 3), Gumbel drops
    # it. (1, 3) = 11 lies above the clamp: eta(10) >= 0.7 keeps it, with zero gradient.
    logits = [row[:] for row in LOGITS]
    logits[1][3] = 11.0
    loss = build(activation="gumbel")
    weight = acsl_weight(GT, logits, XI, GROUPS, {"r": 0, "c": 0, "f": 1}, prob=gumbel_cdf)
    assert weight(0, 3) == 0 and weight(0, 1) == 1 and weight(1, 3) == 1
    expected, grad = weighted_binary(logits, GT, weight, activation="gumbel")
    assert grad[1][3] == 0
    check(loss, logits, GT, expected, grad)
    # The sigmoid version keeps (0, 3).
    assert acsl_weight(GT, logits, XI, GROUPS, {"r": 0, "c": 0, "f": 1})(0, 3) == 1


# -- reductions to simpler losses ------------------------------------------------------------


def sigmoid_ce_k_plus_1(logits, gt):
    """Plain BCE over all K + 1 columns with y = onehot(gt, K + 1), sum / R, and its gradient
    (float64 autograd on torch's own BCE, no lt_det code)."""
    z = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    y = F.one_hot(torch.tensor(gt), z.shape[1]).double()
    value = F.binary_cross_entropy_with_logits(z, y, reduction="sum") / len(z)
    value.backward()
    return value.item(), z.grad.tolist()


def test_xi_zero_keeping_every_background_term_is_sigmoid_ce(check):
    expected, grad = sigmoid_ce_k_plus_1(LOGITS, GT)
    check(build(score_threshold=0.0, background_keep=(1.0, 1.0, 1.0)), LOGITS, GT, expected, grad)


def test_xi_zero_on_foreground_rois_is_sigmoid_ce(check):
    # Released background fractions, but no background RoI: every term of every RoI is kept.
    gt = [0, 2, 1, 0]
    expected, grad = sigmoid_ce_k_plus_1(LOGITS, gt)
    check(build(score_threshold=0.0), LOGITS, gt, expected, grad)


def test_gumbel_xi_zero_keeping_everything_is_gumbel_ce(check):
    logits = [row[:] for row in LOGITS]
    logits[2][1] = -5.0  # one logit below the clamp
    reference = GumbelCE(num_classes=K, clamp_loss=False)
    z = torch.tensor(logits, requires_grad=True)
    value = reference(z, torch.tensor(GT))
    value.backward()
    check(build(score_threshold=0.0, background_keep=(1, 1, 1), activation="gumbel"), logits, GT, value.item(),
          z.grad.tolist())


def test_xi_above_one_keeps_only_positives(check):
    # Nothing reaches xi = 1.5 and no background-row group is kept: each RoI keeps only its own
    # label's column, L = (1/R) sum_i log(1 + exp(-z_{i, gt_i})), gradient (sigma - 1) / R there.
    loss = build(score_threshold=1.5, background_keep=(0.0, 0.0, 0.0))
    expected = sum(math.log1p(math.exp(-LOGITS[i][GT[i]])) for i in range(R)) / R
    grad = [[(sigmoid(z) - 1.0) / R if j == GT[i] else 0.0 for j, z in enumerate(row)] for i, row in enumerate(LOGITS)]
    check(loss, LOGITS, GT, expected, grad)


def test_xi_above_one_with_released_background_rule(check):
    # Foreground rows as above; background rows add the frequent class's negative term.
    loss = build(score_threshold=1.5)
    f = GROUPS.index("f")
    expected = sum(math.log1p(math.exp(-LOGITS[i][GT[i]])) for i in range(R)) / R
    expected += sum(math.log1p(math.exp(LOGITS[i][f])) for i in range(R) if GT[i] == K) / R
    grad = [[(sigmoid(z) - (j == GT[i])) / R if j == GT[i] or (GT[i] == K and j == f) else 0.0
             for j, z in enumerate(row)] for i, row in enumerate(LOGITS)]
    check(loss, LOGITS, GT, expected, grad)


# -- the threshold acts on detached scores ---------------------------------------------------


def test_threshold_acts_on_detached_scores(check):
    # Logits just above and just below sigma^-1(0.7): the kept one gets exactly the fixed-weight
    # gradient sigma(z) / R (no term from differentiating the mask), the other none.
    edge = math.log(XI / (1 - XI))
    logits = [[3.0, edge + 1e-3, edge - 1e-3, -2.0]]
    loss = build()
    weight = acsl_weight([0], logits, XI, GROUPS, {"r": 0, "c": 0, "f": 1})
    assert weight(0, 1) == 1 and weight(0, 2) == 0
    expected, grad = weighted_binary(logits, [0], weight)
    check(loss, logits, [0], expected, grad)
    z = torch.tensor(logits, requires_grad=True)
    w = loss.weights(z, torch.tensor([0]))
    assert not w.requires_grad and w.tolist() == [[1.0, 1.0, 0.0, 0.0]]


# -- background RoIs: the random frequency-group draws ---------------------------------------


@pytest.mark.parametrize("num_background", [250, 199])
def test_background_rows_keep_drawn_groups(num_background):
    torch.manual_seed(0)
    loss = build()
    gt = torch.tensor([0, 1, 2] + [K] * num_background)
    logits = torch.randn(len(gt), K + 1) * 2
    w = loss.weights(logits, gt)
    bg = w[3:]
    # Exactly floor(ratio * n_bg) background rows keep the rare / common class; all keep the
    # frequent class and the background column.
    assert bg[:, 0].sum().item() == int(num_background * 0.01)
    assert bg[:, 1].sum().item() == int(num_background * 0.1)
    assert bg[:, 2].eq(1).all() and bg[:, K].eq(1).all()
    # Foreground rows follow the score rule.
    high = (torch.sigmoid(logits[:3]) >= XI).float()
    assert torch.equal(w[:3], torch.maximum(high, F.one_hot(gt[:3], K + 1).float()))
    # The loss uses that draw: same generator state, same weights.
    torch.manual_seed(1)
    w1 = loss.weights(logits, gt)
    torch.manual_seed(1)
    value = loss(logits, gt)
    y = F.one_hot(gt, K + 1).float()
    manual = sum(w1[i, j].item() * bce(logits[i, j].item(), y[i, j].item())
                 for i in range(len(gt)) for j in range(K + 1)) / len(gt)
    assert value.item() == pytest.approx(manual, rel=1e-5)


def test_background_draws_change_between_steps():
    loss = build()
    gt = torch.tensor([K] * 300)
    logits = torch.zeros(300, K + 1)
    torch.manual_seed(0)
    first = loss.weights(logits, gt)[:, 1].clone()
    second = loss.weights(logits, gt)[:, 1]
    assert first.sum() == second.sum() == 30 and not torch.equal(first, second)


# -- layout, init, scores --------------------------------------------------------------------


def test_layout_init_and_scores():
    loss = build()
    assert loss.num_logits(K) == K + 1
    linear = torch.nn.Linear(64, K + 1)
    loss.init_classifier(linear)
    torch.testing.assert_close(linear.bias, torch.full((K + 1,), -math.log(0.99 / 0.01)))
    assert 0.005 < linear.weight.std().item() < 0.015
    z = torch.tensor(LOGITS)
    torch.testing.assert_close(loss.scores(z), torch.sigmoid(z))  # K + 1, background last
    # The background column is trained: argmax over all K + 1 scores.
    assert loss.predict_classes(z).tolist() == [0, 3, 0, 1]
    gumbel = build(activation="gumbel")
    gumbel.init_classifier(linear)
    assert linear.weight.eq(0.001).all() and linear.bias.eq(-2.0).all()
    far = torch.tensor([[12.0, -6.0, 0.0, 1.0]])
    torch.testing.assert_close(gumbel.scores(far), torch.exp(-torch.exp(-far)))  # unclamped at test
    assert loss.state_dict() == {}  # stateless: nothing enters a checkpoint


# -- statistics and config -------------------------------------------------------------------


def test_groups_come_from_the_class_statistics():
    loss = build_loss(loss_cfg("acsl"))
    assert isinstance(loss, ACSL) and loss.num_classes == STATS_K
    assert loss.group.tolist() == ["rcf".index(g) for g in STATS_FREQUENCY]
    assert loss.score_threshold == 0.7 and loss.background_keep == (0.01, 0.1, 1.0)
    assert loss.activation == "sigmoid" and loss.num_logits(STATS_K) == STATS_K + 1


def test_config_keys_reach_the_loss():
    cfg = loss_cfg("acsl")
    cfg.MODEL.LT_LOSS.ACSL.SCORE_THRESHOLD = 0.5
    cfg.MODEL.LT_LOSS.ACSL.BACKGROUND_KEEP = [0.0, 0.5, 1.0]
    cfg.MODEL.LT_LOSS.ACSL.PRIOR_PROB = 0.001
    cfg.MODEL.LT_LOSS.ACTIVATION = "gumbel"
    loss = build_loss(cfg)
    assert loss.score_threshold == 0.5 and loss.background_keep == (0.0, 0.5, 1.0)
    assert loss.prior_prob == 0.001 and loss.activation == "gumbel"


def test_missing_statistics_name_the_dataset():
    name = no_stats_dataset(STATS_K)
    with pytest.raises(KeyError, match=f"Loss 'acsl' .* needs per-class training statistics.*{name}"):
        build_loss(loss_cfg("acsl", dataset=name))


def test_wrong_class_count_names_the_key():
    message = f"NUM_CLASSES is {STATS_K + 1}.*'{STATS_DATASET}'.*set MODEL.ROI_HEADS.NUM_CLASSES {STATS_K}"
    with pytest.raises(ValueError, match=message):
        build_loss(loss_cfg("acsl", num_classes=STATS_K + 1))


def test_frequency_of_another_length_names_the_key():
    message = (r"Loss 'acsl' \(MODEL.LT_LOSS.NAME\): 'frequency' has 2 entries but num_classes "
               r"\(MODEL.ROI_HEADS.NUM_CLASSES\) is 3.*DATASETS.TRAIN")
    with pytest.raises(ValueError, match=message):
        build(frequency=["r", "f"])
    # From a config, with the statistics' groups replaced by a list of another length.
    message = message.replace("is 3", f"is {STATS_K}")
    with pytest.raises(ValueError, match=message):
        build_loss(loss_cfg("acsl"), frequency=["r", "f"])


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"unknown frequency groups \['x'\]"):
        build(frequency=["r", "x", "f"])
    with pytest.raises(ValueError, match="BACKGROUND_KEEP"):
        build(background_keep=(0.01, 0.1))
    with pytest.raises(ValueError, match="BACKGROUND_KEEP"):
        build(background_keep=(0.01, 0.1, 1.5))
    with pytest.raises(ValueError, match="Unknown activation"):
        build(activation="softmax")

"""Sigmoid-family losses against their formulas (docs/losses.md), written out element by element.

Shared example: K = 3 classes, R = 3 RoIs (two foreground, one background), reduction sum / R.
"""
import math
import re

import pytest
import torch
import torchvision

from lt_det.losses.balanced_sigmoid import BalancedSigmoid
from lt_det.losses.droploss import DropLoss
from lt_det.losses.eql import EqualizationLoss, tail_weights
from lt_det.losses.gumbel_ce import GumbelCE
from lt_det.losses.focal import SigmoidFocalLoss
from lt_det.losses.sigmoid_ce import SigmoidCE

from loss_reference import bce, dbce, gumbel_terms, onehot_row

# Every test here runs on the fused path and on the reference.
pytestmark = pytest.mark.usefixtures("both_implementations")


K = 3
LOGITS = [[2.0, -1.0, 0.5], [-0.3, 1.2, -2.5], [0.7, -0.4, 3.0]]
GT = [0, 2, 3]  # RoI 2 is background
R = len(GT)
# Image frequencies: class 2 rare, class 1 in between, class 0 frequent.
FREQ = [0.5, 0.01, 0.0005]


def weighted_bce(logits, gt, weight):
    """sum_ij w_ij BCE(z_ij, y_ij) / R and its gradient, from the scalar definitions."""
    loss, grad = 0.0, []
    for i, row in enumerate(logits):
        y = onehot_row(gt[i], len(row))
        loss += sum(weight(i, j) * bce(z, y[j]) for j, z in enumerate(row))
        grad.append([weight(i, j) * dbce(z, y[j]) / len(logits) for j, z in enumerate(row)])
    return loss / len(logits), grad


def test_sigmoid_ce_pinned_value():
    # All logits 0: each of the K terms is log 2, whatever the label.
    loss = SigmoidCE(num_classes=2, background_logit=False)
    z = torch.zeros(4, 2, requires_grad=True)
    value = loss(z, torch.tensor([0, 1, 2, 2]))
    value.backward()
    assert value.item() == pytest.approx(2 * math.log(2.0))
    expected = torch.tensor([[-0.5, 0.5], [0.5, -0.5], [0.5, 0.5], [0.5, 0.5]]) / 4
    torch.testing.assert_close(z.grad, expected)


def test_sigmoid_ce_ignores_background_logit(check):
    loss = SigmoidCE(num_classes=K)  # K + 1 logits, the last unused
    logits = [row + [5.0] for row in LOGITS]
    expected, grad = weighted_bce(LOGITS, GT, lambda i, j: 1.0)
    check(loss, logits, GT, expected, [g + [0.0] for g in grad])


def test_focal_matches_torchvision_definition(check):
    loss = SigmoidFocalLoss(num_classes=K, alpha=0.25, gamma=2.0, background_logit=False)
    z = torch.tensor(LOGITS, dtype=torch.float64, requires_grad=True)
    y = torch.nn.functional.one_hot(torch.tensor(GT), K + 1)[:, :K].double()
    reference = torchvision.ops.sigmoid_focal_loss(z, y, alpha=0.25, gamma=2.0, reduction="sum") / R
    reference.backward()
    check(loss, LOGITS, GT, reference.item(), z.grad.tolist())


def test_focal_by_hand():
    # One RoI, one class, z = 0, y = 0: p = 0.5, loss = (1 - alpha) p^2 log 2,
    # derivative (1 - alpha) p^2 (2 (1 - p) log 2 + p).
    loss = SigmoidFocalLoss(num_classes=1, alpha=0.25, gamma=2.0, background_logit=False)
    z = torch.zeros(1, 1, requires_grad=True)
    value = loss(z, torch.tensor([1]))
    value.backward()
    assert value.item() == pytest.approx(0.75 * 0.25 * math.log(2.0))
    assert z.grad.item() == pytest.approx(0.75 * 0.25 * (2 * 0.5 * math.log(2.0) + 0.5))


def weighted_binary(logits, gt, weight, activation):
    """sum_ij w_ij l(z_ij, y_ij) / R and its gradient, l = BCE or the Gumbel BCE, from the scalar
    definitions of loss_reference."""
    if activation == "sigmoid":
        return weighted_bce(logits, gt, weight)
    total, grad = 0.0, []
    for i, row in enumerate(logits):
        y = onehot_row(gt[i], len(row))
        g_row = []
        for j, z in enumerate(row):
            lp, ln, dp, dn = gumbel_terms(z)
            total += weight(i, j) * (lp if y[j] else ln)
            g_row.append(weight(i, j) * (dp if y[j] else dn) / len(logits))
        grad.append(g_row)
    return total / len(logits), grad


@pytest.mark.parametrize("activation", ["sigmoid", "gumbel"])
def test_eql_lambda_zero_is_plain_binary_loss(activation, check):
    # lambda = 0: no class is tail, so EQL (and DropLoss) is the plain binary loss.
    expected, grad = weighted_binary(LOGITS, GT, lambda i, j: 1.0, activation)
    for loss_cls in (EqualizationLoss, DropLoss):
        check(loss_cls(num_classes=K, image_frequency=FREQ, threshold=0.0, activation=activation), LOGITS, GT,
              expected, grad)


def eql_weight(tail, gt, verified=None, exclude_background=True):
    def w(i, j):
        fg = gt[i] < K if exclude_background else 1.0  # E(r)
        y = gt[i] == j
        unverified = 1.0 if verified is None else 1.0 - verified[i][j]
        return 1.0 - fg * tail[j] * unverified * (1 - y)

    return w


def test_eql_removes_tail_negatives_on_foreground_rois(check):
    # lambda = 0.02: classes 1 and 2 are tail.
    loss = EqualizationLoss(num_classes=K, image_frequency=FREQ, threshold=0.02, activation="sigmoid")
    tail = [0, 1, 1]
    expected, grad = weighted_bce(LOGITS, GT, eql_weight(tail, GT))
    # RoI 0 (class 0) loses the tail negatives 1 and 2; RoI 1 (class 2) loses class 1 only.
    assert grad[0][1] == 0 and grad[0][2] == 0 and grad[1][1] == 0 and grad[1][2] != 0
    check(loss, LOGITS, GT, expected, grad)


def test_eql_without_the_excluding_function_drops_tail_negatives_of_background_rois(check):
    # E(r) off (the paper's Table 4): background RoI 2 loses the negatives of tail classes 1 and 2.
    loss = EqualizationLoss(num_classes=K, image_frequency=FREQ, threshold=0.02, exclude_background=False)
    expected, grad = weighted_bce(LOGITS, GT, eql_weight([0, 1, 1], GT, exclude_background=False))
    assert grad[2][0] != 0 and grad[2][1] == 0 and grad[2][2] == 0
    check(loss, LOGITS, GT, expected, grad)


def test_eql_excluding_function_changes_nothing_on_foreground_rois(check):
    # Every RoI foreground: E(r) = 1 either way, so the two settings give EQL's values.
    gt = [0, 2, 1]
    expected, grad = weighted_bce(LOGITS, gt, eql_weight([0, 1, 1], gt))
    for exclude in (True, False):
        check(EqualizationLoss(num_classes=K, image_frequency=FREQ, threshold=0.02, exclude_background=exclude),
              LOGITS, gt, expected, grad)


def exponential_decay(f, a, n):
    return max(0.0, 1.0 - (a * f) ** n)  # the paper's 1 - (a f)^n, clipped at 0 (lt_det's reading)


def gompertz_decay(f, a, b, c):
    return 1.0 - a * math.exp(-b * math.exp(-c * f))


def test_eql_threshold_functions_at_the_papers_values():
    # a = 400, n = 2: f = 0.001 gives 1 - 0.4^2 = 0.84; f >= 1 / 400 gives 0. Gompertz a = 1, b = 80,
    # c = 3000: f = 0.001 gives 1 - exp(-80 e^-3) = 0.98137; f = 0 gives 1 - e^-80.
    freq = [0.0, 0.001, 0.0025, 0.01]
    assert tail_weights(freq, "exponential").tolist() == pytest.approx([1.0, 0.84, 0.0, 0.0], abs=1e-7)
    assert tail_weights(freq, "gompertz").tolist() == pytest.approx(
        [1.0 - math.exp(-80.0), 1.0 - math.exp(-80.0 * math.exp(-3.0)), 1.0 - math.exp(-80.0 * math.exp(-7.5)),
         1.0 - math.exp(-80.0 * math.exp(-30.0))], abs=1e-7)
    assert 1.0 - math.exp(-80.0 * math.exp(-3.0)) == pytest.approx(0.98137, abs=1e-5)


@pytest.mark.parametrize("function, params", [("exponential", (60.0, 2.0)), ("gompertz", (0.9, 2.0, 100.0))])
def test_eql_decay_weights_each_tail_negative_by_one_minus_t(function, params, check):
    # exponential (60, 2) on FREQ: T = 0, 1 - 0.6^2 = 0.64, 1 - 0.03^2 = 0.9991; Gompertz (0.9, 2, 100):
    # T = 1 - 0.9 exp(-2 exp(-100 f)) = 0.1, 0.5688, 0.8657. Foreground RoIs weigh class j's
    # negative by 1 - T_j; background RoIs keep every term.
    decay = exponential_decay if function == "exponential" else gompertz_decay
    T = [decay(f, *params) for f in FREQ]
    assert 0 < T[1] < 1 and 0 < T[2] < 1
    loss = EqualizationLoss(num_classes=K, image_frequency=FREQ, threshold_function=function,
                            **{f"{function}_decay": params})
    expected, grad = weighted_bce(LOGITS, GT, eql_weight(T, GT))
    check(loss, LOGITS, GT, expected, grad)


def test_eql_step_is_the_limit_of_both_decays(check):
    # lambda = 0.02 marks classes 1 and 2 (f = 0.01, 0.0005). Exponential with a = 1 / lambda and a
    # large n, and Gompertz with a = 1, b = exp(c lambda) and a large c, give T = 0, 1, 1 to within
    # 1e-60: the step's loss and gradient.
    expected, grad = weighted_bce(LOGITS, GT, eql_weight([0, 1, 1], GT))
    c = 2000.0
    for loss in (EqualizationLoss(num_classes=K, image_frequency=FREQ, threshold_function="exponential",
                                  exponential_decay=(1 / 0.02, 200.0)),
                 EqualizationLoss(num_classes=K, image_frequency=FREQ, threshold_function="gompertz",
                                  gompertz_decay=(1.0, math.exp(c * 0.02), c)),
                 EqualizationLoss(num_classes=K, image_frequency=FREQ, threshold=0.02)):
        check(loss, LOGITS, GT, expected, grad)


def test_eql_threshold_function_bad_input_is_named():
    with pytest.raises(ValueError, match=r"THRESHOLD_FUNCTION must be one of \['step', 'exponential', 'gompertz'\]"):
        EqualizationLoss(num_classes=K, image_frequency=FREQ, threshold_function="linear")
    with pytest.raises(ValueError, match="EXPONENTIAL_DECAY"):
        EqualizationLoss(num_classes=K, image_frequency=FREQ, threshold_function="exponential",
                         exponential_decay=(400.0, 0.0))
    with pytest.raises(ValueError, match="GOMPERTZ_DECAY"):
        EqualizationLoss(num_classes=K, image_frequency=FREQ, threshold_function="gompertz",
                         gompertz_decay=(2.0, 80.0, 3000.0))


def test_eql_image_labels_keep_verified_classes(check):
    from detectron2.structures import Boxes, Instances

    loss = EqualizationLoss(num_classes=K, image_frequency=FREQ, threshold=0.02, use_image_labels=True)
    # Two images: RoIs 0-1 in image A (verified: class 1), RoI 2 in image B (nothing verified).
    verified = [[0, 1, 0], [0, 1, 0], [0, 0, 0]]
    proposals = []
    for rows in ([0, 1], [2]):
        p = Instances((10, 10), proposal_boxes=Boxes(torch.zeros(len(rows), 4)))
        p.gt_classes = torch.tensor([GT[r] for r in rows])
        p.gt_image_labels = torch.tensor([verified[r] for r in rows], dtype=torch.bool)
        proposals.append(p)
    expected, grad = weighted_bce(LOGITS, GT, eql_weight([0, 1, 1], GT, verified))
    assert grad[0][1] != 0  # class 1 is tail but verified in image A: kept
    check(loss, LOGITS, GT, expected, grad, proposals=proposals)


def test_eql_image_labels_missing_field_says_how_to_fix():
    from detectron2.structures import Boxes, Instances

    loss = EqualizationLoss(num_classes=K, image_frequency=FREQ, threshold=0.02, use_image_labels=True)
    p = Instances((10, 10), proposal_boxes=Boxes(torch.zeros(3, 4)))
    p.gt_classes = torch.tensor(GT)
    with pytest.raises(KeyError, match="ImageLabelDatasetMapper"):
        loss(torch.tensor(LOGITS), torch.tensor(GT), proposals=[p])


def test_eql_gumbel_by_hand(check):
    loss = EqualizationLoss(num_classes=K, image_frequency=FREQ, threshold=0.02, activation="gumbel")
    weight = eql_weight([0, 1, 1], GT)
    total, grad = 0.0, []
    logits = [[12.0, -1.0, 0.5], [-0.3, 1.2, -5.0], [0.7, -4.5, 3.0]]  # some outside [-4, 10]
    for i, row in enumerate(logits):
        y = onehot_row(GT[i], K)
        g_row = []
        for j, z in enumerate(row):
            lp, ln, dp, dn = gumbel_terms(z)
            total += weight(i, j) * (lp if y[j] else ln)
            g_row.append(weight(i, j) * (dp if y[j] else dn) / R)
        grad.append(g_row)
    assert grad[0][0] == 0 and grad[1][2] == 0  # clamped: no gradient
    check(loss, logits, GT, total / R, grad)


def test_balanced_sigmoid_released_shifts_foreground_rois_only(check):
    loss = BalancedSigmoid(num_classes=K, image_frequency=FREQ, instance_count=[100, 10, 1])
    shift = [math.log(f / (1 - f)) for f in FREQ]
    shifted = [[z + (shift[j] if GT[i] < K else 0.0) for j, z in enumerate(row)] for i, row in enumerate(LOGITS)]
    expected, grad = weighted_bce(shifted, GT, lambda i, j: 1.0)
    check(loss, LOGITS, GT, expected, grad)
    scores = loss.scores(torch.tensor(LOGITS))
    torch.testing.assert_close(scores[:, :K], torch.sigmoid(torch.tensor(LOGITS)))  # test: no shift
    assert scores[:, K].eq(0).all()


def test_balanced_sigmoid_paper_form_shifts_every_roi(check):
    counts = [100, 10, 1]
    loss = BalancedSigmoid(num_classes=K, image_frequency=FREQ, instance_count=counts, form="paper")
    n = sum(counts)
    shift = [math.log(c / (n - c)) + math.log(K - 1) for c in counts]
    shifted = [[z + shift[j] for j, z in enumerate(row)] for row in LOGITS]
    expected, grad = weighted_bce(shifted, GT, lambda i, j: 1.0)
    check(loss, LOGITS, GT, expected, grad)


def test_balanced_sigmoid_init():
    linear = torch.nn.Linear(4, 3)
    BalancedSigmoid(num_classes=K, image_frequency=FREQ, instance_count=[3, 2, 1]).init_classifier(linear)
    torch.testing.assert_close(linear.bias, torch.full((3,), -math.log(0.999 / 0.001)))


def test_droploss_foreground_rows_match_eql_and_no_foreground_is_bce():
    drop = DropLoss(num_classes=K, image_frequency=FREQ, threshold=0.02)
    # No foreground RoI: plain BCE.
    gt_bg = [3, 3, 3]
    z = torch.tensor(LOGITS, requires_grad=True)
    drop(z, torch.tensor(gt_bg)).backward()
    _, grad = weighted_bce(LOGITS, gt_bg, lambda i, j: 1.0)
    torch.testing.assert_close(z.grad, torch.tensor(grad))


def test_droploss_ratio_one_keeps_background_and_ratio_zero_drops_tail(check):
    drop = DropLoss(num_classes=K, image_frequency=FREQ, threshold=0.02)
    tail = [0, 1, 1]
    # Every foreground RoI is tail (ratio = 1): U < 1 never exceeds it, background keeps all terms.
    gt = [1, 2, 3]
    expected, grad = weighted_bce(LOGITS, gt, eql_weight(tail, gt))
    check(drop, LOGITS, gt, expected, grad)
    # No foreground RoI is tail (ratio = 0): U > 0 almost surely, background drops tail negatives.
    gt = [0, 0, 3]
    weight = lambda i, j: 1.0 - tail[j] * (1 - (gt[i] == j))  # noqa: E731
    expected, grad = weighted_bce(LOGITS, gt, weight)
    check(drop, LOGITS, gt, expected, grad)


def test_droploss_drops_background_tail_negatives_with_probability_one_minus_ratio():
    torch.manual_seed(0)
    num_classes, num_bg = 4, 4000
    drop = DropLoss(num_classes=num_classes, image_frequency=[0.5, 0.0001, 0.0001, 0.0001], threshold=0.001)
    gt = torch.tensor([1, 0] + [num_classes] * num_bg)  # ratio = 1/2
    z = torch.zeros(len(gt), num_classes, requires_grad=True)
    drop(z, gt).backward()
    kept = (z.grad[2:, 1:] != 0).float().mean().item()
    assert kept == pytest.approx(0.5, abs=0.02)
    assert (z.grad[2:, 0] != 0).all()  # a frequent class is never dropped


def gumbel_ce_direct(z, gt):
    """GOL's Gumbel CE over K + 1 columns in log space, as one autograd formula."""
    y = torch.nn.functional.one_hot(gt, z.shape[1]).to(z.dtype)
    x = z.clamp(-4, 10)
    loss = y * torch.exp(-x) - (1 - y) * torch.log(-torch.expm1(-torch.exp(-x)))
    return loss.sum() / z.shape[0]


def test_gumbel_ce_equals_direct_log_space_formula():
    torch.manual_seed(0)
    logits = torch.randn(50, 6) * 5
    gt = torch.randint(0, 6, (50,))
    loss = GumbelCE(num_classes=5, clamp_loss=False)
    z1, z2 = logits.clone().requires_grad_(), logits.clone().double().requires_grad_()
    value = loss(z1, gt)
    value.backward()
    reference = gumbel_ce_direct(z2, gt)
    reference.backward()
    assert value.item() == pytest.approx(reference.item(), rel=1e-5)
    torch.testing.assert_close(z1.grad, z2.grad.float(), rtol=1e-4, atol=1e-7)
    assert loss.scores(logits).shape == (50, 6)
    torch.testing.assert_close(loss.scores(logits), torch.exp(-torch.exp(-logits)))


def test_gumbel_ce_by_hand(check):
    # One RoI, K = 1: column 0 negative, column 1 (background) positive, logits 0 and 1.
    lp0, ln0, dp0, dn0 = gumbel_terms(0.0)
    lp1, ln1, dp1, dn1 = gumbel_terms(1.0)
    check(GumbelCE(num_classes=1), [[0.0, 1.0]], [1], ln0 + lp1, [[dn0, dp1]])


def test_gumbel_ce_clamps_the_reduced_loss():
    loss = GumbelCE(num_classes=2)
    z = torch.full((1, 3), -4.0, requires_grad=True)  # positive term e^4 = 54.6 > 20
    value = loss(z, torch.tensor([0]))
    value.backward()
    assert value.item() == 20.0
    assert z.grad.abs().sum() == 0


def test_gumbel_init():
    linear = torch.nn.Linear(4, 3)
    EqualizationLoss(num_classes=K, image_frequency=FREQ, activation="gumbel").init_classifier(linear)
    assert linear.weight.eq(0.001).all() and linear.bias.eq(-2.0).all()


def test_tail_classes_are_logged(caplog):
    with caplog.at_level("INFO"):
        EqualizationLoss(num_classes=K, image_frequency=FREQ, threshold=0.02)
    assert "marks 2 of 3 classes as tail" in caplog.text and "[1, 2]" in caplog.text
    # TR = (0.01 + 0.0005) / (0.5 + 0.01 + 0.0005) = 0.0105 / 0.5105 = 2.057 %
    assert "tail ratio TR = 2.06%" in caplog.text


@pytest.mark.parametrize(
    "cat_info, num_images, threshold, num_tail, tail_ratio",
    [("lvis_v1_train_cat_info.json", 99388, 0.0011, 815, 5.9),
     ("lvis_v0.5_train_cat_info.json", 56740, 0.00177, 915, 9.1)],
)
def test_released_lambdas_mark_the_released_tail_counts(cat_info, num_images, threshold, num_tail, tail_ratio,
                                                        caplog):
    # EQL's released values: v1 lambda = 0.0011 marks 815 classes; v0.5 lambda = 0.00177 marks 915 (r + c).
    # Their tail ratios (docs/losses.md: 5.9% and 9.1%, in the paper's good range 2-10%).
    import json
    import pathlib

    from lt_det.data.class_stats import ClassStats

    with open(pathlib.Path(__file__).parents[1] / "data" / cat_info) as f:
        stats = ClassStats.from_records(sorted(json.load(f), key=lambda c: c["id"]), num_images)
    with caplog.at_level("INFO"):
        loss = EqualizationLoss(num_classes=stats.num_classes, image_frequency=stats.image_frequency,
                                threshold=threshold)
    assert int(loss.tail.sum()) == num_tail
    logged = float(re.search(r"tail ratio TR = ([0-9.]+)%", caplog.text).group(1))
    assert logged == pytest.approx(tail_ratio, abs=0.05)


def test_class_balanced_focal_by_hand():
    """beta = 0.5, instance counts (1, 2): raw weights (1 - b) / (1 - b^n) = (1, 2/3), normalised to
    sum K = 2: (1.2, 0.8); background rows weigh 1. At z = 0 every focal term (gamma 2, no alpha)
    is p^2 log 2 = 0.25 log 2 and its derivative +-0.25 (log 2 + 0.5)."""
    from lt_det.losses.class_balanced_focal import ClassBalancedFocal

    loss = ClassBalancedFocal(num_classes=2, instance_count=[1, 2], beta=0.5, gamma=2.0, background_logit=False)
    z = torch.zeros(2, 2, requires_grad=True)
    value = loss(z, torch.tensor([0, 2]))  # a class-0 RoI and a background RoI
    value.backward()
    assert value.item() == pytest.approx((1.2 * 2 + 1.0 * 2) * 0.25 * math.log(2.0) / 2)
    d = 0.25 * (math.log(2.0) + 0.5) / 2
    expected = torch.tensor([[-1.2 * d, 1.2 * d], [d, d]])
    torch.testing.assert_close(z.grad, expected)


def test_class_balanced_focal_with_equal_counts_is_focal_without_alpha():
    from lt_det.losses.class_balanced_focal import ClassBalancedFocal

    balanced = ClassBalancedFocal(num_classes=K, instance_count=[7] * K, gamma=2.0, background_logit=False)
    focal = SigmoidFocalLoss(num_classes=K, alpha=-1.0, gamma=2.0, background_logit=False)
    z1 = torch.tensor(LOGITS, requires_grad=True)
    z2 = torch.tensor(LOGITS, requires_grad=True)
    a, b = balanced(z1, torch.tensor(GT)), focal(z2, torch.tensor(GT))
    (a + b).backward()
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(z1.grad, z2.grad)

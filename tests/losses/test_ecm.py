"""ECM (Effective Class-Margin loss) against its closed forms (docs/losses.md), written out element by
element with the math module.

Definitions used here (Cho and Krähenbühl, ECCV 2022; released janghyuncho/ECM-Loss): per column c of
the K + 1 logits (background last), n+_c = n_c, n-_c = N - n_c with N = sum_c n_c and the background
count n_K = rho * sum_{j<K} n_j;
gamma+ = n-^(1/4) / (n+^(1/4) + n-^(1/4)), gamma- = n+^(1/4) / (...), w = a log(1 + 1/a), a = n- / n+;
p = e^{z + m+} / (e^{z + m+} + e^{-z + m-}) with m = -log gamma; L = -sum w [t log p + (1-t) log(1-p)] / R.
"""
import math

import pytest
import torch

import lt_det.losses.ecm  # noqa: F401  (registers "ecm")
from lt_det.losses.ecm import EffectiveClassMarginLoss, ecm_counts, ecm_margins
from lt_det.losses.sigmoid_ce import SigmoidCE

from loss_stats_dataset import INSTANCE_COUNT, NAME, NUM_CLASSES, loss_cfg, no_stats_dataset

# Small hand example: K = 2 classes with 2 instances each, rho = 1 -> n = [2, 2, 4], N = 8.
K = 2
COUNTS = [2, 2]
RHO = 1.0
LOGITS = [[0.8, -1.1, 0.3], [-0.4, 1.6, -2.0], [0.2, -0.7, 1.4]]
GT = [0, 1, 2]  # RoI 2 is background (label K)


def closed_form(counts, rho):
    """[(m+, m-, w)] per column, from the definitions above."""
    n = list(counts) + [rho * sum(counts)]
    total = sum(n)
    out = []
    for n_pos in n:
        n_neg = total - n_pos
        gamma_pos = n_neg**0.25 / (n_pos**0.25 + n_neg**0.25)
        gamma_neg = n_pos**0.25 / (n_pos**0.25 + n_neg**0.25)
        a = n_neg / n_pos
        out.append((-math.log(gamma_pos), -math.log(gamma_neg), a * math.log(1 + 1 / a)))
    return out


def ecm_by_hand(logits, gt, counts, rho):
    """Loss and d loss / d z from the two-logit form; d/dz of -t log p - (1-t) log(1-p) is 2 (p - t)."""
    columns = closed_form(counts, rho)
    total, grad = 0.0, []
    for i, row in enumerate(logits):
        g_row = []
        for c, z in enumerate(row):
            m_pos, m_neg, w = columns[c]
            e_pos, e_neg = math.exp(z + m_pos), math.exp(-z + m_neg)
            p = e_pos / (e_pos + e_neg)
            t = 1.0 if gt[i] == c else 0.0
            total += -w * (t * math.log(p) + (1 - t) * math.log(1 - p))
            g_row.append(w * 2 * (p - t) / len(logits))
        grad.append(g_row)
    return total / len(logits), grad


def test_counts_and_margins_equal_the_closed_form():
    # n = [2, 2, 4]: the background column has n+ = n- = 4, so gamma+- = 1/2, m+- = log 2, w = log 2;
    # a class column has a = 6 / 2 = 3, w = 3 log(4 / 3).
    counts = ecm_counts(COUNTS, RHO)
    assert counts.tolist() == [2.0, 2.0, 4.0]
    m_pos, m_neg, w = ecm_margins(counts)
    assert m_pos[2].item() == pytest.approx(math.log(2)) and m_neg[2].item() == pytest.approx(math.log(2))
    assert w[2].item() == pytest.approx(math.log(2)) and w[0].item() == pytest.approx(3 * math.log(4 / 3))
    for c, (e_pos, e_neg, e_w) in enumerate(closed_form(COUNTS, RHO)):
        assert (m_pos[c].item(), m_neg[c].item(), w[c].item()) == pytest.approx((e_pos, e_neg, e_w), rel=1e-12)
    # The margin difference is a quarter log-odds of the counts: m+ - m- = (1/4) log(n+ / n-).
    assert (m_pos[0] - m_neg[0]).item() == pytest.approx(0.25 * math.log(2 / 6))


def test_margins_of_an_uneven_example():
    # counts [1, 3], rho = 2: n = [1, 3, 8], N = 12.
    counts = ecm_counts([1, 3], 2.0)
    assert counts.tolist() == [1.0, 3.0, 8.0]
    m_pos, m_neg, w = ecm_margins(counts)
    for c, (e_pos, e_neg, e_w) in enumerate(closed_form([1, 3], 2.0)):
        assert (m_pos[c].item(), m_neg[c].item(), w[c].item()) == pytest.approx((e_pos, e_neg, e_w), rel=1e-12)
    # The rarest class gets the most negative shift (1/4) log(1 / 11).
    assert (m_pos - m_neg).argmin().item() == 0


def test_loss_and_gradient_by_hand(check):
    loss = EffectiveClassMarginLoss(num_classes=K, instance_count=COUNTS, fg_bg_ratio=RHO)
    expected, grad = ecm_by_hand(LOGITS, GT, COUNTS, RHO)
    check(loss, LOGITS, GT, expected, grad)


def test_loss_and_gradient_with_the_released_ratio(check):
    counts = [1, 40, 7]
    loss = EffectiveClassMarginLoss(num_classes=3, instance_count=counts)  # rho = 6.3313 (released)
    logits = [[1.0, -2.0, 0.5, 0.1], [3.0, 0.2, -0.6, -1.5], [-0.9, 0.4, 2.2, 2.5], [0.0, 0.0, 0.0, 0.0]]
    gt = [0, 1, 3, 2]
    expected, grad = ecm_by_hand(logits, gt, counts, 6.3313)
    check(loss, logits, gt, expected, grad)


def test_zero_margins_is_sigmoid_ce_of_twice_the_logits():
    # m+ = m- = 0, w = 1: each term is BCE(2 z, t) over all K + 1 columns, i.e. lt_det's sigmoid CE
    # with K + 1 classes (label K then is a class) on the logits 2 z; gradients scale by 2.
    loss = EffectiveClassMarginLoss(num_classes=K, instance_count=COUNTS, fg_bg_ratio=RHO)
    loss.margin_pos.zero_()
    loss.margin_neg.zero_()
    loss.class_weight.fill_(1.0)
    z = torch.tensor(LOGITS, requires_grad=True)
    value = loss(z, torch.tensor(GT))
    value.backward()
    x = (2 * torch.tensor(LOGITS)).requires_grad_()
    reference = SigmoidCE(num_classes=K + 1, background_logit=False)(x, torch.tensor(GT))
    reference.backward()
    assert value.item() == pytest.approx(reference.item(), rel=1e-6)
    torch.testing.assert_close(z.grad, 2 * x.grad)


def test_equal_counts_give_equal_margins_and_weighted_sigmoid_ce():
    # K = 1, rho = 1: n = [5, 5], every column has n+ = n-: m+ = m- = log 2 (no shift), w = log 2,
    # so ECM = log 2 * sum BCE(2 z, t) / R.
    loss = EffectiveClassMarginLoss(num_classes=1, instance_count=[5], fg_bg_ratio=1.0)
    logits, gt = [[0.7, -0.2], [-1.3, 0.9], [2.0, 0.4]], [0, 1, 0]
    z = torch.tensor(logits, requires_grad=True)
    value = loss(z, torch.tensor(gt))
    value.backward()
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    expected = 0.0
    for i, row in enumerate(logits):
        for c, v in enumerate(row):
            t = 1.0 if gt[i] == c else 0.0
            expected += -math.log(2) * (t * math.log(sig(2 * v)) + (1 - t) * math.log(1 - sig(2 * v)))
            assert z.grad[i, c].item() == pytest.approx(math.log(2) * 2 * (sig(2 * v) - t) / 3, rel=1e-5)
    assert value.item() == pytest.approx(expected / 3, rel=1e-6)


def test_scores_are_objectness_times_class_without_margins():
    loss = EffectiveClassMarginLoss(num_classes=K, instance_count=COUNTS, fg_bg_ratio=RHO)
    scores = loss.scores(torch.tensor(LOGITS))
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    for i, row in enumerate(LOGITS):
        expected = [sig(row[0]) * (1 - sig(row[2])), sig(row[1]) * (1 - sig(row[2])), sig(row[2])]
        assert scores[i].tolist() == pytest.approx(expected, rel=1e-6)


def test_layout_and_init():
    loss = EffectiveClassMarginLoss(num_classes=K, instance_count=COUNTS)
    assert loss.num_logits(K) == K + 1
    linear = torch.nn.Linear(256, K + 1)
    loss.init_classifier(linear)
    assert linear.bias.eq(0).all() and 0.005 < linear.weight.std().item() < 0.015


def test_from_config_reads_instance_counts_and_the_released_ratio():
    cfg = loss_cfg("ecm")
    assert cfg.MODEL.LT_LOSS.ECM.FG_BG_RATIO == 6.3313
    from lt_det.losses import build_loss

    loss = build_loss(cfg)
    assert loss.instance_count.tolist() == INSTANCE_COUNT  # instance counts, not image counts
    for c, (e_pos, e_neg, e_w) in enumerate(closed_form(INSTANCE_COUNT, 6.3313)):
        got = (loss.margin_pos[c].item(), loss.margin_neg[c].item(), loss.class_weight[c].item())
        assert got == pytest.approx((e_pos, e_neg, e_w), rel=1e-6)


def test_measured_ratio_updates_before_use_and_is_checkpointed():
    # rho = 0: measured. Step 1 labels [0, bg, bg, bg]: 1 fg, 3 bg RoIs -> rho = 3 for this step.
    loss = EffectiveClassMarginLoss(num_classes=K, instance_count=COUNTS, fg_bg_ratio=0.0)
    logits = [[0.5, -0.5, 1.0], [0.1, 0.2, -0.3], [-1.0, 0.0, 2.0], [0.3, 0.3, 0.3]]
    gt = [0, 2, 2, 2]
    expected, _ = ecm_by_hand(logits, gt, COUNTS, 3.0)
    assert loss(torch.tensor(logits), torch.tensor(gt)).item() == pytest.approx(expected, rel=1e-6)
    assert loss.current_ratio() == 3.0
    # Step 2 labels [1, bg]: cumulative 2 fg, 4 bg -> rho = 2.
    loss(torch.tensor(logits[:2]), torch.tensor([1, 2]))
    assert loss.current_ratio() == 2.0
    m_pos = closed_form(COUNTS, 2.0)[2][0]
    assert loss.margin_pos[2].item() == pytest.approx(m_pos, rel=1e-6)
    state = loss.state_dict()
    assert state["roi_counts"].tolist() == [2.0, 4.0] and "margin_pos" not in state
    # A fixed ratio ignores the counts.
    fixed = EffectiveClassMarginLoss(num_classes=K, instance_count=COUNTS, fg_bg_ratio=RHO)
    fixed(torch.tensor(logits), torch.tensor(gt))
    assert fixed.current_ratio() == RHO and fixed.roi_counts.tolist() == [0.0, 0.0]


def test_missing_statistics_name_the_dataset_and_key():
    from lt_det.losses import build_loss

    name = no_stats_dataset()
    with pytest.raises(KeyError, match=f"Loss 'ecm' .*needs per-class training statistics.*'{name}'"):
        build_loss(loss_cfg("ecm", dataset=name))


def test_wrong_number_of_classes_or_counts_is_refused():
    from lt_det.losses import build_loss

    with pytest.raises(ValueError, match=f"'{NAME}'.*set MODEL.ROI_HEADS.NUM_CLASSES {NUM_CLASSES}"):
        build_loss(loss_cfg("ecm", num_classes=NUM_CLASSES + 1))
    with pytest.raises(ValueError, match="MODEL.LT_LOSS.ECM.FG_BG_RATIO"):
        EffectiveClassMarginLoss(num_classes=2, instance_count=[1, 2], fg_bg_ratio=-1.0)


def test_instance_counts_of_another_length_name_the_key():
    from lt_det.losses import build_loss

    message = (r"Loss 'ecm' \(MODEL.LT_LOSS.NAME\): 'instance_count' has 3 entries but num_classes "
               r"\(MODEL.ROI_HEADS.NUM_CLASSES\) is 2.*DATASETS.TRAIN")
    with pytest.raises(ValueError, match=message):
        EffectiveClassMarginLoss(num_classes=2, instance_count=[1, 2, 3])
    # From a config, with the statistics' counts replaced by a list of another length.
    message = message.replace("is 2", f"is {NUM_CLASSES}")
    with pytest.raises(ValueError, match=message):
        build_loss(loss_cfg("ecm"), instance_count=[1, 2, 3])

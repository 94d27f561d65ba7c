"""Softmax-family losses against their formulas (docs/losses.md).

Shared example: K = 3 foreground classes, R = 3 RoIs (two foreground, one background).
"""
import math

import pytest
import torch
from torch.nn import functional as F


from lt_det.losses.balanced_softmax import BalancedSoftmax
from lt_det.losses.bags import BalancedGroupSoftmax
from lt_det.losses.class_balanced import ClassBalancedCE
from lt_det.losses.inverse_frequency import InverseFrequencyCE
from lt_det.losses.seesaw import SeesawLoss
from lt_det.losses.softmax_ce import SoftmaxCE
from lt_det.losses.softmax_eql import SoftmaxEQL

from loss_reference import ce, dce, softmax

# Every test here runs on the fused path and on the reference.
pytestmark = pytest.mark.usefixtures("both_implementations")


K = 3
LOGITS = [[2.0, -1.0, 0.5, 0.1], [-0.3, 1.2, -2.5, 0.4], [0.7, -0.4, 3.0, 1.5]]
GT = [0, 2, 3]
R = len(GT)


def mean_ce(logits, gt, weight=lambda i: 1.0):
    loss = sum(weight(i) * ce(row, gt[i]) for i, row in enumerate(logits)) / len(logits)
    grad = [[weight(i) * d / len(logits) for d in dce(row, gt[i])] for i, row in enumerate(logits)]
    return loss, grad


def test_softmax_ce_is_detectron2s():
    """lt_det's predictor with softmax_ce gives detectron2's own FastRCNNOutputLayers loss."""
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.box_regression import Box2BoxTransform
    from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
    from detectron2.structures import Boxes, Instances
    from detectron2.utils.events import EventStorage

    torch.manual_seed(0)
    logits, deltas = torch.randn(64, 11), torch.randn(64, 40)
    proposals = Instances((32, 32), proposal_boxes=Boxes(torch.tensor([[1.0, 2.0, 9.0, 12.0]]).repeat(64, 1)),
                          gt_boxes=Boxes(torch.tensor([[2.0, 2.0, 10.0, 11.0]]).repeat(64, 1)),
                          gt_classes=torch.randint(0, 11, (64,)))
    stock = FastRCNNOutputLayers(ShapeSpec(channels=8), box2box_transform=Box2BoxTransform((10, 10, 5, 5)),
                                 num_classes=10)
    z1, z2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    with EventStorage():  # the stock predictor logs its accuracy there
        theirs = stock.losses((z1, deltas), [proposals])["loss_cls"]
    ours = SoftmaxCE(num_classes=10)(z2, proposals.gt_classes)
    theirs.backward()
    ours.backward()
    assert torch.equal(ours, theirs) and torch.equal(z1.grad, z2.grad)
    scores = stock.predict_probs((logits, deltas), [proposals])[0]
    assert torch.equal(SoftmaxCE(num_classes=10).scores(logits), scores)


def test_softmax_ce_by_hand(check):
    expected, grad = mean_ce(LOGITS, GT)
    check(SoftmaxCE(num_classes=K), LOGITS, GT, expected, grad)
    # All-zero logits: CE = log(K + 1).
    z = torch.zeros(2, 4)
    assert SoftmaxCE(num_classes=K)(z, torch.tensor([0, 3])).item() == pytest.approx(math.log(4))


def test_inverse_frequency_by_hand(check):
    counts = [1, 4, 20]
    alpha = [1.0, 0.25, 0.05]
    mean = sum(alpha) / 3
    w = [min(max(a / mean, 0.1), 5.0) for a in alpha] + [1.0]  # the released clip [0.1, 5]
    expected, grad = mean_ce(LOGITS, GT, lambda i: w[GT[i]])
    check(InverseFrequencyCE(num_classes=K, instance_count=counts), LOGITS, GT, expected, grad)


def test_inverse_frequency_clips():
    loss = InverseFrequencyCE(num_classes=2, instance_count=[1, 10000])
    # alpha = [1, 1e-4], mean 0.50005: alpha / mean = [1.9998, 0.0002] -> clipped to [1.9998, 0.1]
    torch.testing.assert_close(loss.class_weights, torch.tensor([1 / 0.50005, 0.1, 1.0]))


def test_class_balanced_by_hand(check):
    beta, counts = 0.5, [1, 2, 3]
    raw = [(1 - beta) / (1 - beta**n) for n in counts]  # 1, 2/3, 4/7
    w = [r * 3 / sum(raw) for r in raw] + [1.0]
    expected, grad = mean_ce(LOGITS, GT, lambda i: w[GT[i]])
    check(ClassBalancedCE(num_classes=K, instance_count=counts, beta=beta), LOGITS, GT, expected, grad)


def test_class_balanced_truncation_by_hand(check):
    # beta = 0.5, counts 1, 2, 3: normalised weights 3 * [1, 2/3, 4/7] / (1 + 2/3 + 4/7) =
    # [1.3404, 0.8936, 0.7660]; BAGS's truncation to [0.8, 1.2] gives [1.2, 0.8936, 0.8].
    beta, counts = 0.5, [1, 2, 3]
    raw = [1.0, 2 / 3, 4 / 7]
    w = [min(max(r * 3 / sum(raw), 0.8), 1.2) for r in raw] + [1.0]
    assert w[0] == 1.2 and w[2] == 0.8 and 0.8 < w[1] < 1.2
    expected, grad = mean_ce(LOGITS, GT, lambda i: w[GT[i]])
    check(ClassBalancedCE(num_classes=K, instance_count=counts, beta=beta, clip=(0.8, 1.2)), LOGITS, GT,
          expected, grad)
    # a range holding every weight truncates nothing: the untruncated loss
    wide = ClassBalancedCE(num_classes=K, instance_count=counts, beta=beta, clip=(0.01, 5.0))
    torch.testing.assert_close(wide.class_weights, ClassBalancedCE(num_classes=K, instance_count=counts,
                                                                   beta=beta).class_weights)


def test_class_balanced_truncation_must_be_a_range():
    with pytest.raises(ValueError, match="CLASS_BALANCED.CLIP"):
        ClassBalancedCE(num_classes=K, instance_count=[1, 2, 3], clip=(5.0, 0.01))


def test_balanced_softmax_by_hand(check):
    counts, p = [100, 10, 1], 0.25
    shift = [math.log(c) for c in counts] + [math.log(sum(counts) * 0.75 / 0.25)]
    shifted = [[z + s for z, s in zip(row, shift)] for row in LOGITS]
    expected, grad = mean_ce(shifted, GT)
    check(BalancedSoftmax(num_classes=K, instance_count=counts, positive_fraction=p), LOGITS, GT, expected, grad)
    # The foreground-only variant leaves the background logit alone.
    shifted = [[z + s for z, s in zip(row, shift[:3] + [0.0])] for row in LOGITS]
    expected, grad = mean_ce(shifted, GT)
    loss = BalancedSoftmax(num_classes=K, instance_count=counts, background="none")
    check(loss, LOGITS, GT, expected, grad)


def test_balanced_softmax_eq_28_form_by_hand(check):
    # q = 1/4: counts 16, 81, 1 give shifts log 2, log 3, 0; "none" leaves the background at 0
    shift = [math.log(2.0), math.log(3.0), 0.0, 0.0]
    shifted = [[z + s for z, s in zip(row, shift)] for row in LOGITS]
    expected, grad = mean_ce(shifted, GT)
    loss = BalancedSoftmax(num_classes=K, instance_count=[16, 81, 1], background="none", exponent=0.25)
    check(loss, LOGITS, GT, expected, grad)


def test_balanced_softmax_with_exponent_zero_is_ce(check):
    expected, grad = mean_ce(LOGITS, GT)
    check(BalancedSoftmax(num_classes=K, instance_count=[100, 10, 1], exponent=0.0), LOGITS, GT, expected, grad)


def test_balanced_softmax_with_equal_counts_is_ce(check):
    # n_bg = K n (1 - P) / P equals n when P = K / (K + 1): every logit gets the same shift.
    loss = BalancedSoftmax(num_classes=K, instance_count=[7, 7, 7], positive_fraction=K / (K + 1))
    expected, grad = mean_ce(LOGITS, GT)
    check(loss, LOGITS, GT, expected, grad)
    torch.testing.assert_close(loss.scores(torch.tensor(LOGITS)), F.softmax(torch.tensor(LOGITS), dim=1))


def test_softmax_eql_gamma_zero_is_ce_and_gamma_one_removes_every_tail_negative(check):
    freq = [0.5, 0.0001, 0.0001]  # classes 1 and 2 are tail
    expected, grad = mean_ce(LOGITS, GT)
    check(SoftmaxEQL(num_classes=K, image_frequency=freq, gamma=0.0), LOGITS, GT, expected, grad)
    # gamma = 1: RoI 0 (class 0) loses classes 1 and 2; RoI 1 (class 2) loses class 1; bg keeps all.
    removed = {0: [1, 2], 1: [1], 2: []}
    loss, grad = 0.0, []
    for i, row in enumerate(LOGITS):
        kept = [j for j in range(K + 1) if j not in removed[i]]
        sub = [row[j] for j in kept]
        loss += ce(sub, kept.index(GT[i]))
        d = dce(sub, kept.index(GT[i]))
        grad.append([d[kept.index(j)] / R if j in kept else 0.0 for j in range(K + 1)])
    check(SoftmaxEQL(num_classes=K, image_frequency=freq, gamma=1.0), LOGITS, GT, loss / R, grad)


def bags_layout():
    # Counts 5 (G1: < 10), 50 (G2), 5 (G1): G3 and G4 are empty.
    # Logits: G0 [bg, others] | G1 [class 0, class 2, others] | G2 [class 1, others] | G3 [o] | G4 [o]
    return BalancedGroupSoftmax(num_classes=K, instance_count=[5, 50, 5], others_ratio=100.0)


def test_bags_by_hand(check):
    loss = bags_layout()
    assert loss.num_logits(K) == K + 1 + 5
    logits = [[0.1, 0.9, 2.0, 0.5, -1.0, 0.3, 0.2, 0.0, 0.0],
              [1.1, -0.2, 0.4, 1.3, 0.8, -0.6, 0.9, 0.0, 0.0],
              [2.0, 0.1, -0.5, 0.2, 1.0, 0.7, -0.3, 0.0, 0.0]]
    gt = [0, 1, 3]
    # G0: labels bg -> 0, fg -> 1, every RoI.
    g0 = [1, 1, 0]
    total = sum(ce(row[0:2], g0[i]) for i, row in enumerate(logits)) / 3
    grad = [[d / 3 for d in dce(row[0:2], g0[i])] + [0.0] * 7 for i, row in enumerate(logits)]
    # G1 [class 0, class 2, others]: own RoI 0 (label 0); others ratio 100 takes RoIs 1 and 2.
    g1 = [0, 2, 2]
    total += sum(ce(row[2:5], g1[i]) for i, row in enumerate(logits)) / 3
    for i, row in enumerate(logits):
        grad[i][2:5] = [d / 3 for d in dce(row[2:5], g1[i])]
    # G2 [class 1, others]: own RoI 1; others RoIs 0 and 2.
    g2 = [1, 0, 1]
    total += sum(ce(row[5:7], g2[i]) for i, row in enumerate(logits)) / 3
    for i, row in enumerate(logits):
        grad[i][5:7] = [d / 3 for d in dce(row[5:7], g2[i])]
    check(loss, logits, gt, total, grad)

    scores = loss.scores(torch.tensor(logits)).tolist()
    for i, row in enumerate(logits):
        p0, p1, p2 = softmax(row[0:2]), softmax(row[2:5]), softmax(row[5:7])
        expected = [p0[1] * p1[0], p0[1] * p2[0], p0[1] * p1[1], p0[0]]
        assert scores[i] == pytest.approx(expected, rel=1e-5)


def test_bags_samples_beta_times_own_rois():
    torch.manual_seed(0)
    loss = BalancedGroupSoftmax(num_classes=2, instance_count=[5, 50], others_ratio=2.0)
    # G1 = [class 0, others] at columns 2-3; 3 own RoIs -> 6 of the 20 others sampled.
    gt = torch.tensor([0, 0, 0] + [2] * 20)
    z = torch.zeros(len(gt), loss.num_logits(2), requires_grad=True)
    loss(z, gt).backward()
    used = (z.grad[:, 2:4] != 0).any(dim=1)
    assert used[:3].all() and used[3:].sum() == 6


def test_bags_with_a_single_group_is_softmax_ce():
    # One foreground group (no bin edges) and every other RoI sampled: the group's softmax is a
    # CE over [classes..., others] with others as background, plus G0's 2-way CE.
    torch.manual_seed(0)
    loss = BalancedGroupSoftmax(num_classes=4, instance_count=[1, 2, 3, 4], bin_edges=(), others_ratio=1e6)
    logits = torch.randn(20, loss.num_logits(4))
    gt = torch.randint(0, 5, (20,))
    gt[0] = 0
    z1, z2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    loss(z1, gt).backward()
    reference = F.cross_entropy(z2[:, 2:], gt) + F.cross_entropy(z2[:, :2], (gt < 4).long())
    reference.backward()
    torch.testing.assert_close(z1.grad, z2.grad)


def seesaw_reference(class_logits, gt, counts, p, q):
    """mmdetection's seesaw class term, one foreground RoI at a time, from mmdetection's seesaw_loss.py."""
    total, grad = 0.0, []
    for row, y in zip(class_logits, gt):
        sigma = softmax(row)
        s_y = max(sigma[y], 1e-2)
        adjusted = []
        for j, z in enumerate(row):
            if j == y:
                adjusted.append(z)
                continue
            m = (counts[j] / counts[y]) ** p if counts[j] < counts[y] else 1.0
            c = (sigma[j] / s_y) ** q if sigma[j] > s_y else 1.0
            adjusted.append(z + math.log(m * c))
        total += ce(adjusted, y)
        grad.append(dce(adjusted, y))  # the factors are constants (counts, detached sigma)
    return total, grad


def test_seesaw_by_hand(check):
    loss = SeesawLoss(num_classes=K, p=0.8, q=2.0)
    loss.cum_samples += torch.tensor([9.0, 2.0, 0.0, 20.0])
    logits = [[2.0, -1.0, 0.5, 0.3, -0.2], [-0.3, 1.2, -2.5, 0.1, 0.4], [0.7, -0.4, 3.0, -1.0, 1.0]]
    gt = [0, 2, 3]
    counts = [10.0, 2.0, 1.0]  # after this step's update (class 2 clamped from 1 to >= 1)
    fg_total, fg_grad = seesaw_reference([logits[0][:3], logits[1][:3]], [0, 2], counts, 0.8, 2.0)
    obj_labels = [0, 0, 1]
    obj_total = sum(ce(row[3:], obj_labels[i]) for i, row in enumerate(logits))
    grad = [
        [d / 3 for d in fg_grad[0]] + [d / 3 for d in dce(logits[0][3:], 0)],
        [d / 3 for d in fg_grad[1]] + [d / 3 for d in dce(logits[1][3:], 0)],
        [0.0] * 3 + [d / 3 for d in dce(logits[2][3:], 1)],
    ]
    check(loss, logits, gt, (fg_total + obj_total) / 3, grad)
    assert loss.cum_samples.tolist() == [10.0, 2.0, 1.0, 21.0]


def test_seesaw_self_score_clamp_by_hand(check):
    """sigma_iy < 1e-2 (label logit -3 against 4): compensation uses max(sigma_iy, 1e-2)."""
    loss = SeesawLoss(num_classes=3, p=0.8, q=2.0)
    loss.cum_samples += torch.tensor([4.0, 0.0, 1.0, 0.0])
    logits = [[4.0, 0.0, -3.0, 0.2, -0.1]]
    counts = [4.0, 1.0, 2.0]  # after this step's update; class 1 clamped to >= 1
    sigma_y = math.exp(-3.0) / (math.exp(4.0) + 1.0 + math.exp(-3.0))
    assert sigma_y < 1e-2
    fg_total, fg_grad = seesaw_reference([logits[0][:3]], [2], counts, 0.8, 2.0)
    grad = [fg_grad[0] + dce(logits[0][3:], 0)]
    check(loss, logits, [2], fg_total + ce(logits[0][3:], 0), grad)


def test_seesaw_p_q_zero_is_ce_on_class_logits():
    torch.manual_seed(0)
    loss = SeesawLoss(num_classes=5, p=0.0, q=0.0)
    logits = torch.randn(30, 7)
    gt = torch.randint(0, 6, (30,))
    z1, z2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    loss(z1, gt).backward()
    fg = gt < 5
    reference = F.cross_entropy(z2[fg, :5], gt[fg], reduction="sum") / 30 + F.cross_entropy(z2[:, 5:], (~fg).long())
    reference.backward()
    torch.testing.assert_close(z1.grad, z2.grad)


def test_seesaw_scores():
    loss = SeesawLoss(num_classes=2)
    logits = torch.tensor([[1.0, 2.0, 0.5, -0.5]])
    p_cls, p_obj = softmax([1.0, 2.0]), softmax([0.5, -0.5])
    expected = [p_cls[0] * p_obj[0], p_cls[1] * p_obj[0], p_obj[1]]
    assert loss.scores(logits)[0].tolist() == pytest.approx(expected)

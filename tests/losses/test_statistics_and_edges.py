"""Which per-class statistic each loss reads from the config, and edge cases of
the released code that no other test pins.

The statistics are those of ``loss_stats_dataset``: image_count = [1, 5, 20, 60, 300, 900] with
# Every test here runs on the fused path and on the reference.
pytestmark = pytest.mark.usefixtures("both_implementations")


M = 1000 annotated images (image frequency f = [0.001, 0.005, 0.02, 0.06, 0.3, 0.9]) and
instance_count = [2, 8, 30, 80, 500, 3000]. Expected values are worked out from those numbers.
"""
import math

import pytest
import torch

from lt_det.losses import build_loss
from lt_det.losses.bags import BalancedGroupSoftmax
from lt_det.losses.seesaw import SeesawLoss

from loss_reference import ce, dce, softmax
from loss_stats_dataset import IMAGE_COUNT, INSTANCE_COUNT, loss_cfg


@pytest.mark.parametrize("name", ["eql", "droploss", "softmax_eql"])
def test_tail_uses_image_frequency(name):
    # lambda = 0.025: f = image_count / M marks classes 0, 1, 2 (0.001, 0.005, 0.02). Instance
    # counts / M (0.002, 0.008, 0.03, ...) would mark 0 and 1 only; raw image counts none.
    cfg = loss_cfg(name)
    cfg.MODEL.LT_LOSS.TAIL_THRESHOLD = 0.025
    assert build_loss(cfg).tail.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]


def test_eql_threshold_function_from_the_config():
    # f = [0.001, 0.005, ...]: exponential (400, 2) gives 1 - 0.4^2 = 0.84, then 1 - 2^2 < 0, clipped
    # to 0; Gompertz (1, 80, 3000) gives 1 - exp(-80 e^-3) and 1 - exp(-80 e^-15) = 2.4e-5, then ~0.
    cfg = loss_cfg("eql")
    cfg.MODEL.LT_LOSS.EQL.THRESHOLD_FUNCTION = "exponential"
    assert build_loss(cfg).tail.tolist() == pytest.approx([0.84, 0, 0, 0, 0, 0], abs=1e-7)
    cfg.MODEL.LT_LOSS.EQL.THRESHOLD_FUNCTION = "gompertz"
    expected = [1 - math.exp(-80 * math.exp(-3000 * c / 1000)) for c in IMAGE_COUNT]
    assert expected[1] == pytest.approx(2.4e-5, abs=1e-6)
    assert build_loss(cfg).tail.tolist() == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize("name", ["eql", "droploss", "softmax_eql"])
def test_tail_frequency_over_all_images(name):
    # lambda = 0.02: over the 1000 annotated images f = 0.001, 0.005, 0.02, ... marks classes 0 and 1;
    # over all 1250 images f = 0.0008, 0.004, 0.016, 0.048, ... marks 0, 1 and 2.
    cfg = loss_cfg(name)
    cfg.MODEL.LT_LOSS.TAIL_THRESHOLD = 0.02
    assert build_loss(cfg).tail.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    cfg.MODEL.LT_LOSS.TAIL_FREQUENCY_IMAGES = "all"
    assert build_loss(cfg).tail.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]


def test_tail_frequency_over_all_images_needs_their_number():
    from detectron2.data import MetadataCatalog

    name = "lt_det_test_stats_without_all_images"
    meta = MetadataCatalog.get(name)
    if not hasattr(meta, "class_statistics"):
        records = MetadataCatalog.get(loss_cfg("eql").DATASETS.TRAIN[0]).class_statistics
        meta.set(class_statistics=records, num_annotated_images=1000)
    cfg = loss_cfg("eql", dataset=name)
    cfg.MODEL.LT_LOSS.TAIL_FREQUENCY_IMAGES = "all"
    message = f"TAIL_FREQUENCY_IMAGES 'all' with DATASETS.TRAIN \\['{name}'\\]: .*num_all_images"
    with pytest.raises(KeyError, match=message):
        build_loss(cfg)
    cfg.MODEL.LT_LOSS.TAIL_FREQUENCY_IMAGES = "every"
    with pytest.raises(ValueError, match="'annotated' or 'all'"):
        build_loss(cfg)


def test_balanced_sigmoid_shift_uses_image_frequency():
    # logit(f_j) = log(f_j / (1 - f_j)), f = image_count / 1000.
    expected = [math.log((c / 1000) / (1 - c / 1000)) for c in IMAGE_COUNT]
    assert expected[0] == pytest.approx(-6.906755, abs=1e-6) and expected[5] == pytest.approx(math.log(9.0))
    assert build_loss(loss_cfg("balanced_sigmoid")).logit_shift.tolist() == pytest.approx(expected, rel=1e-6)


def test_federated_weights_are_sqrt_image_count():
    expected = [1.0, math.sqrt(5), math.sqrt(20), math.sqrt(60), math.sqrt(300), 30.0]
    assert build_loss(loss_cfg("federated")).class_weights.tolist() == pytest.approx(expected, rel=1e-6)


def test_bags_groups_use_instance_count():
    # instance_count [2, 8 | 30, 80 | 500 | 3000] -> groups 1 1 2 2 3 4 (image counts would put
    # class 5, 900 images, in group 3).
    loss = build_loss(loss_cfg("bags"))
    assert loss.class_group.tolist() == [1, 1, 2, 2, 3, 4]
    assert loss.num_logits(6) == 6 + 1 + 5


def test_bags_bin_edges_are_left_closed():
    # G1: n < 10, G2: 10 <= n < 100, G3: 100 <= n < 1000, G4: n >= 1000.
    loss = BalancedGroupSoftmax(num_classes=6, instance_count=[9, 10, 99, 100, 999, 1000])
    assert loss.class_group.tolist() == [1, 2, 2, 3, 3, 4]


def test_reweighting_uses_instance_count():
    # alpha = 1 / n over its mean (0.673167 / 6), clipped to the released [0.1, 5]: 4.45655,
    # 1.11414, 0.297103, 0.111414, 0.0178262 -> 0.1, 0.00297 -> 0.1; background 1.
    expected = [4.456549, 1.114137, 0.297103, 0.111414, 0.1, 0.1, 1.0]
    assert build_loss(loss_cfg("inverse_frequency")).class_weights.tolist() == pytest.approx(expected, rel=1e-5)


def test_balanced_softmax_reads_the_positive_fraction():
    # n_bg = sum n * (1 - P) / P; sum n = 3620, P = 0.5 -> n_bg = 3620.
    cfg = loss_cfg("balanced_softmax")
    cfg.MODEL.ROI_HEADS.POSITIVE_FRACTION = 0.5
    expected = [math.log(n) for n in INSTANCE_COUNT] + [math.log(3620.0)]
    assert build_loss(cfg).log_prior.tolist() == pytest.approx(expected, rel=1e-6)


def test_prior_bias_options():
    linear = torch.nn.Linear(4, 7)
    cfg = loss_cfg("federated")
    cfg.MODEL.LT_LOSS.FEDERATED.PRIOR_PROB = 0.01  # Detic / CenterNet2
    build_loss(cfg).init_classifier(linear)
    assert linear.bias.tolist() == pytest.approx([-math.log(99.0)] * 7)  # -4.5951
    build_loss(loss_cfg("sigmoid_ce")).init_classifier(linear)
    assert linear.bias.eq(0).all()  # detectron2 main
    linear = torch.nn.Linear(4, 6)
    build_loss(loss_cfg("eql")).init_classifier(linear)
    assert linear.bias.tolist() == pytest.approx([-math.log(999.0)] * 6)  # -6.9068


def test_seesaw_clamps_unseen_counts_and_the_self_score():
    # Step labels [0, 0, bg]: N = [2, 0, 0] -> clamped [2, 1, 1], so M_0j = (1 / 2)^0.8 for j = 1, 2
    # (unclamped it would be 0, removing those classes). RoI 0 scores its own class at
    # sigma_0 = 2.9e-4 < 1e-2: compensation uses sigma_j / 0.01.
    loss = SeesawLoss(num_classes=3, p=0.8, q=2.0)
    logits = [[-5.0, 3.0, 1.0, 0.2, 0.1], [0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0, 0.0]]
    gt = [0, 0, 3]
    total, grad = 0.0, []
    for i in range(2):
        row = logits[i][:3]
        sigma = softmax(row)
        s_y = max(sigma[0], 1e-2)
        adjusted = [row[0]]
        for j in (1, 2):
            c = (sigma[j] / s_y) ** 2 if sigma[j] > s_y else 1.0
            adjusted.append(row[j] + math.log(0.5**0.8 * c))
        total += ce(adjusted, 0)
        grad.append([d / 3 for d in dce(adjusted, 0)] + [d / 3 for d in dce(logits[i][3:], 0)])
    total += sum(ce(logits[i][3:], label) for i, label in enumerate([0, 0, 1]))
    grad.append([0.0] * 3 + [d / 3 for d in dce(logits[2][3:], 1)])
    assert softmax(logits[0][:3])[0] < 1e-2  # the self-score clamp is exercised

    z = torch.tensor(logits, requires_grad=True)
    value = loss(z, torch.tensor(gt))
    value.backward()
    assert value.item() == pytest.approx(total / 3, rel=1e-5)
    torch.testing.assert_close(z.grad, torch.tensor(grad), rtol=1e-4, atol=1e-6)

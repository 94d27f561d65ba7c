"""EQLv2 (lt_det/losses/eqlv2.py) against its scalar definitions (docs/losses.md, "EQLv2").

Expected values are computed here from the definitions, element by element:

    r_j = f(g_j) = 1 / (1 + exp(-gamma (g_j - mu))), q_j = 1 + alpha (1 - r_j), r_K = q_K = 1
    w_ij = q_j y_ij + r_j (1 - y_ij),   L = sum_ij w_ij l(z_ij, y_ij) / R   (K + 1 columns, y_iK = 1[gt_i = K])
    pos_grad_j += sum_i w_ij |l'(z_ij, y_ij)| y_ij,  neg_grad_j += sum_i w_ij |l'| (1 - y_ij),
    g_j = pos_grad_j / (neg_grad_j + 1e-10), updated after the loss (g starts at 100).
"""
import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn import functional as F

import lt_det.losses.eqlv2  # noqa: F401  (registers "eqlv2")
from lt_det.losses import build_loss
from lt_det.losses.eqlv2 import EQLv2

from loss_reference import bce, dbce, gumbel_terms, sigmoid
from loss_stats_dataset import loss_cfg

LOG2 = math.log(2.0)
GAMMA, MU, ALPHA = 12.0, 0.8, 4.0

# The general example: K = 3 classes, K + 1 = 4 logits (the last is objectness / background),
# R = 5 RoIs; two steps. Logits outside GOL's [-4, 10] clamp exercise the Gumbel activation.
K = 3
LOGITS_1 = [[2.0, -1.0, 0.5, -3.0], [-0.3, 1.2, -2.5, 0.4], [0.7, -4.5, 3.0, -1.1], [-1.5, 0.2, -0.8, 2.2],
            [0.1, -2.0, 1.3, 0.0]]
GT_1 = [0, 2, 1, 3, 3]
LOGITS_2 = [[-0.5, 1.5, -1.0, 0.3], [1.1, -0.2, 0.6, -2.0], [0.0, 0.9, -1.7, 11.0], [2.5, -0.6, 0.4, -0.9],
            [-1.2, -0.1, 0.8, 1.4]]
GT_2 = [1, 1, 0, 3, 2]


def f_map(g, gamma=GAMMA, mu=MU):
    return 1.0 / (1.0 + math.exp(-gamma * (g - mu)))


def initial_stats(num_classes):
    return [0.0] * num_classes, [0.0] * num_classes, [100.0] * num_classes


def reference_step(logits, gt, num_classes, stats, activation="sigmoid", gamma=GAMMA, mu=MU, alpha=ALPHA):
    """One EQLv2 step from the scalar definitions -> (loss, d loss / d logits, statistics after)."""
    pos_grad, neg_grad, pos_neg = (list(s) for s in stats)
    r = [f_map(g, gamma, mu) for g in pos_neg] + [1.0]
    q = [1.0 + alpha * (1.0 - rj) for rj in r]
    R = len(logits)
    total, grad = 0.0, []
    new_pos, new_neg = list(pos_grad), list(neg_grad)
    for i, row in enumerate(logits):
        g_row = []
        for j, z in enumerate(row):
            y = 1.0 if gt[i] == j else 0.0
            if activation == "sigmoid":
                value, d = bce(z, y), dbce(z, y)
            else:
                loss_pos, loss_neg, d_pos, d_neg = gumbel_terms(z)
                value, d = (loss_pos, d_pos) if y else (loss_neg, d_neg)
            w = q[j] if y else r[j]
            total += w * value
            g_row.append(w * d / R)
            if j < num_classes:
                if y:
                    new_pos[j] += w * abs(d)
                else:
                    new_neg[j] += w * abs(d)
        grad.append(g_row)
    new_ratio = [p / (n + 1e-10) for p, n in zip(new_pos, new_neg)]
    return total / R, grad, (new_pos, new_neg, new_ratio)


def assert_stats(loss, expected, rel=1e-5):
    pos, neg, ratio = expected
    assert loss.pos_grad.tolist() == pytest.approx(pos, rel=rel, abs=1e-6)
    assert loss.neg_grad.tolist() == pytest.approx(neg, rel=rel, abs=1e-6)
    assert loss.pos_neg.tolist() == pytest.approx(ratio, rel=rel, abs=1e-6)


# -- hand-derived steps --------------------------------------------------------------------------


def test_two_steps_on_zero_logits_by_hand(check):
    # K = 2, R = 5, all logits 0 (p = 1/2, |l'| = 1/2 everywhere); class 0: 2 positives and 3
    # negatives, class 1: 1 and 4, background column: 2 and 3.
    loss = EQLv2(num_classes=2)
    gt = [0, 0, 1, 2, 2]
    y = [[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]]
    zeros = [[0.0] * 3 for _ in gt]
    # Step 1: g = 100, f(100) = 1: every weight 1, so L = 3 log 2 and dL/dz = (1/2 - y) / 5.
    check(loss, zeros, gt, 3 * LOG2, [[(0.5 - v) / 5 for v in row] for row in y])
    # pos_grad = 1/2 x positives, neg_grad = 1/2 x negatives, g = [2/3, 1/4].
    assert_stats(loss, ([1.0, 0.5], [1.5, 2.0], [2 / 3, 1 / 4]))
    # Step 2: r_j = 1 / (1 + exp(-12 (g_j - 0.8))), q_j = 1 + 4 (1 - r_j); background weights 1.
    r = [1 / (1 + math.exp(-12 * (2 / 3 - 0.8))), 1 / (1 + math.exp(-12 * (1 / 4 - 0.8)))]
    q = [1 + 4 * (1 - r[0]), 1 + 4 * (1 - r[1])]
    assert r[0] == pytest.approx(0.167982, rel=1e-5) and r[1] == pytest.approx(0.001359, rel=1e-3)
    w = [[q[0] if y[i][0] else r[0], q[1] if y[i][1] else r[1], 1.0] for i in range(5)]
    expected = LOG2 * (2 * q[0] + 3 * r[0] + q[1] + 4 * r[1] + 5) / 5
    check(loss, zeros, gt, expected, [[w[i][j] * (0.5 - y[i][j]) / 5 for j in range(3)] for i in range(5)])
    pos = [1.0 + 0.5 * 2 * q[0], 0.5 + 0.5 * q[1]]
    neg = [1.5 + 0.5 * 3 * r[0], 2.0 + 0.5 * 4 * r[1]]
    assert_stats(loss, (pos, neg, [pos[0] / neg[0], pos[1] / neg[1]]))


@pytest.mark.parametrize("activation", ["sigmoid", "gumbel"])
def test_two_steps_against_scalar_definition(activation, check):
    loss = EQLv2(num_classes=K, activation=activation)
    stats = initial_stats(K)
    for step, (logits, gt) in enumerate(((LOGITS_1, GT_1), (LOGITS_2, GT_2))):
        unweighted = reference_step(logits, gt, K, initial_stats(K), activation)[0]
        expected, grad, stats_after = reference_step(logits, gt, K, stats, activation)
        # Step 1 has weights 1; step 2 is re-weighted by the statistics of step 1.
        assert (expected == pytest.approx(unweighted)) == (step == 0)
        check(loss, logits, gt, expected, grad)
        assert_stats(loss, stats_after)
        stats = stats_after


def test_first_step_is_sigmoid_ce_over_the_k_plus_1_columns(check):
    # Initial statistics (g = 100): weights exactly 1, so the loss is BCE over all K + 1 columns
    # against onehot(gt, K + 1), the objectness column's target being 1[gt = K].
    loss = EQLv2(num_classes=K)
    q, r = loss.column_weights()
    assert q.tolist() == [1.0] * (K + 1) and r.tolist() == [1.0] * (K + 1)
    z = torch.tensor(LOGITS_1, requires_grad=True)
    target = F.one_hot(torch.tensor(GT_1), K + 1).float()
    reference = F.binary_cross_entropy_with_logits(z, target, reduction="sum") / len(GT_1)
    reference.backward()
    check(loss, LOGITS_1, GT_1, reference.item(), z.grad.tolist())


def test_mapping_saturated_is_sigmoid_ce_at_every_step(check):
    # mu = -10: f(g) = 1 / (1 + exp(-12 (g + 10))) = 1 in float32 for every g >= 0, so q = r = 1
    # at every step even as the statistics accumulate: plain BCE over the K + 1 columns.
    loss = EQLv2(num_classes=K, mu=-10.0)
    for logits, gt in ((LOGITS_1, GT_1), (LOGITS_2, GT_2), (LOGITS_1, GT_2)):
        z = torch.tensor(logits, requires_grad=True)
        reference = F.binary_cross_entropy_with_logits(z, F.one_hot(torch.tensor(gt), K + 1).float(),
                                                       reduction="sum") / len(gt)
        reference.backward()
        check(loss, logits, gt, reference.item(), z.grad.tolist())
    assert (loss.pos_grad > 0).all() and (loss.neg_grad > 0).all()


@pytest.mark.parametrize("activation", ["sigmoid", "gumbel"])
def test_statistics_are_sums_of_the_step_gradient_magnitudes(activation):
    # Over several steps, pos_grad_j / neg_grad_j = sum over steps and RoIs of R |dL/dz_ij| over
    # the positives / negatives of class j: the actual gradient of the loss under the activation
    # (autograd), times R (the released statistic has no 1 / R).
    torch.manual_seed(0)
    loss = EQLv2(num_classes=K, activation=activation)
    pos, neg = torch.zeros(K, dtype=torch.float64), torch.zeros(K, dtype=torch.float64)
    for step in range(4):
        R = 6 + step
        z = (torch.randn(R, K + 1) * 4).requires_grad_()
        gt = torch.randint(0, K + 1, (R,))
        loss(z, gt).backward()
        y = F.one_hot(gt, K + 1).double()[:, :K]
        g = R * z.grad.double()[:, :K].abs()
        pos += (g * y).sum(0)
        neg += (g * (1 - y)).sum(0)
    assert loss.pos_grad.tolist() == pytest.approx(pos.tolist(), rel=1e-5)
    assert loss.neg_grad.tolist() == pytest.approx(neg.tolist(), rel=1e-5)
    assert loss.pos_neg.tolist() == pytest.approx((pos / (neg + 1e-10)).tolist(), rel=1e-5)


def test_empty_batch_leaves_the_statistics():
    loss = EQLv2(num_classes=K)
    value = loss(torch.zeros(0, K + 1, requires_grad=True), torch.zeros(0, dtype=torch.long))
    assert value.item() == 0.0
    assert_stats(loss, initial_stats(K))


# -- scores, layout, config, bad input -----------------------------------------------------------


def test_scores_with_and_without_objectness():
    logits = [[0.5, -1.0, 0.3], [2.0, 0.0, -1.5]]  # K = 2
    z = torch.tensor(logits)
    with_obj = EQLv2(num_classes=2).scores(z)
    without = EQLv2(num_classes=2, test_with_obj=False).scores(z)
    for i, row in enumerate(logits):
        bg = sigmoid(row[2])
        assert with_obj[i].tolist() == pytest.approx([sigmoid(row[0]) * (1 - bg), sigmoid(row[1]) * (1 - bg), bg])
        assert without[i].tolist() == pytest.approx([sigmoid(v) for v in row])
    gumbel = EQLv2(num_classes=2, activation="gumbel").scores(z)
    eta = [[math.exp(-math.exp(-v)) for v in row] for row in logits]
    assert gumbel[1].tolist() == pytest.approx([eta[1][0] * (1 - eta[1][2]), eta[1][1] * (1 - eta[1][2]), eta[1][2]])
    # RoI 1: class 0 scores sigma(2) (1 - sigma(-1.5)) = 0.7114 >= 0.5; RoI 0: none reaches 0.5.
    assert EQLv2(num_classes=2).predict_classes(z).tolist() == [2, 0]


def test_layout_and_released_init():
    loss = EQLv2(num_classes=5)
    assert loss.num_logits(5) == 6
    linear = nn.Linear(64, 6)
    loss.init_classifier(linear)
    # Released: normal_init(fc_cls, std=0.01, bias=bias_init_with_prob(0.001)) on all K + 1 rows.
    assert linear.bias.tolist() == pytest.approx([-math.log(0.999 / 0.001)] * 6)
    assert linear.weight.std().item() == pytest.approx(0.01, rel=0.2)


def test_config_defaults_and_options():
    loss = build_loss(loss_cfg("eqlv2"))
    assert isinstance(loss, EQLv2)
    assert (loss.gamma, loss.mu, loss.alpha) == (12.0, 0.8, 4.0)
    assert loss.sync_stats and loss.test_with_obj and loss.activation == "sigmoid"
    cfg = loss_cfg("eqlv2")
    cfg.MODEL.LT_LOSS.EQLV2.SYNC_STATS = False
    cfg.MODEL.LT_LOSS.EQLV2.ALPHA = 2.0
    cfg.MODEL.LT_LOSS.ACTIVATION = "gumbel"
    loss = build_loss(cfg)
    assert not loss.sync_stats and loss.alpha == 2.0 and loss.activation == "gumbel"


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"K \+ 1 = 4 logits"):
        EQLv2(num_classes=K)(torch.zeros(2, K), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="Unknown activation 'softmax'"):
        EQLv2(num_classes=K, activation="softmax")


# -- checkpoints ---------------------------------------------------------------------------------


class Holder(nn.Module):
    """A tiny model: a classifier and its EQLv2 loss (as the box predictor holds it)."""

    def __init__(self, num_classes):
        super().__init__()
        self.cls_loss = EQLv2(num_classes=num_classes)
        self.cls_score = nn.Linear(4, num_classes + 1)


def _step(holder, logits, gt):
    z = torch.tensor(logits, requires_grad=True)
    value = holder.cls_loss(z, torch.tensor(gt))
    value.backward()
    return value.item(), z.grad


def test_checkpoint_round_trip_continues_with_the_same_statistics(tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer

    trained = Holder(K)
    _step(trained, LOGITS_1, GT_1)
    _step(trained, LOGITS_2, GT_2)
    DetectionCheckpointer(trained, save_dir=str(tmp_path)).save("eqlv2")
    resumed = Holder(K)
    DetectionCheckpointer(resumed).load(str(tmp_path / "eqlv2.pth"))
    for name in ("pos_grad", "neg_grad", "pos_neg", "stats_num_classes"):
        assert torch.equal(getattr(resumed.cls_loss, name), getattr(trained.cls_loss, name)), name
    assert resumed.cls_loss.pos_neg.tolist() != [100.0] * K  # restored, not the initial value
    # The next step: same weights, loss, gradient and statistics.
    value_a, grad_a = _step(trained, LOGITS_1, GT_2)
    value_b, grad_b = _step(resumed, LOGITS_1, GT_2)
    assert value_a == value_b and torch.equal(grad_a, grad_b)
    assert torch.equal(resumed.cls_loss.pos_grad, trained.cls_loss.pos_grad)


def test_loading_statistics_of_another_class_count_fails_clearly(tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer

    trained = Holder(K)
    _step(trained, LOGITS_1, GT_1)
    DetectionCheckpointer(trained, save_dir=str(tmp_path)).save("eqlv2")
    message = r"Loss 'eqlv2'.*K = 3 classes.*MODEL.ROI_HEADS.NUM_CLASSES = 5"
    # detectron2's checkpointer drops tensors of another shape with a warning; the loss still fails.
    with pytest.raises(ValueError, match=message):
        DetectionCheckpointer(Holder(5)).load(str(tmp_path / "eqlv2.pth"))
    with pytest.raises(ValueError, match=message):
        Holder(5).load_state_dict(trained.state_dict())
    # A checkpoint without the count (statistics only) is caught by the buffers' length.
    state = {k: v for k, v in trained.cls_loss.state_dict().items() if k != "stats_num_classes"}
    with pytest.raises(ValueError, match=r"K = 3 classes.*NUM_CLASSES = 5"):
        EQLv2(num_classes=5).load_state_dict(state, strict=False)


# -- two processes (gloo) -------------------------------------------------------------------------

# Per step, the full batch of 10 RoIs; process r takes RoIs [5 r, 5 r + 5). The halves differ
# in their classes, so per-process statistics differ from the global ones.
DIST_STEPS = [(LOGITS_1 + LOGITS_2, GT_1 + GT_2), (LOGITS_2 + LOGITS_1, GT_2 + GT_1),
              (LOGITS_1 + LOGITS_1, GT_1 + GT_1)]
HALF = 5


def _run_steps(loss, steps, rows):
    """Run ``loss`` over ``steps`` on the RoIs ``rows``; -> per step (loss value, statistics)."""
    records = []
    for logits, gt in steps:
        z = torch.tensor(logits)[rows].requires_grad_()
        value = loss(z, torch.tensor(gt)[rows])
        value.backward()
        records.append((value.item(), [loss.pos_grad.clone(), loss.neg_grad.clone(), loss.pos_neg.clone()]))
    return records


def _gloo_worker(rank, world_size, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        rows = slice(rank * HALF, (rank + 1) * HALF)
        synced = _run_steps(EQLv2(num_classes=K, sync_stats=True), DIST_STEPS, rows)
        local = _run_steps(EQLv2(num_classes=K, sync_stats=False), DIST_STEPS, rows)
        torch.save({"synced": synced, "local": local}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_all_reduce_the_statistics(tmp_path):
    mp.spawn(_gloo_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    whole = _run_steps(EQLv2(num_classes=K), DIST_STEPS, slice(0, 2 * HALF))  # one process, both halves
    halves = [_run_steps(EQLv2(num_classes=K), DIST_STEPS, slice(r * HALF, (r + 1) * HALF)) for r in range(2)]
    for step, (whole_value, whole_stats) in enumerate(whole):
        # Synced: both processes hold the statistics of the concatenated batch, so they weight
        # alike and their losses (each sum / 5) average to the one-process loss (sum / 10).
        for rank in ranks:
            for got, want in zip(rank["synced"][step][1], whole_stats):
                torch.testing.assert_close(got, want)
        mean = (ranks[0]["synced"][step][0] + ranks[1]["synced"][step][0]) / 2
        assert mean == pytest.approx(whole_value, rel=1e-6)
        # Per process: each holds the statistics of its own half only.
        for r in range(2):
            for got, want in zip(ranks[r]["local"][step][1], halves[r][step][1]):
                torch.testing.assert_close(got, want)
            assert not torch.allclose(ranks[r]["local"][step][1][0], whole_stats[0])

"""LOCE's equilibrium loss against its formula (docs/losses.md), written out element by element.

    L = (1/R) sum_i CE(z_i + log s, gt_i),   s_c <- alpha^n s_c + (1 - alpha^n) mean(object scores of c)

with s updated before use from the softmax of the unadjusted logits, background fixed at 0.01.
Shared example: K = 3 foreground classes, R = 3 RoIs (two foreground, one background).
"""
import io
import math
import os

import pytest
import torch
from torch.nn import functional as F

from lt_det.losses.loce import EquilibriumLoss  # importing registers "loce"
from lt_det.losses.softmax_ce import SoftmaxCE

from loss_reference import ce, dce, softmax
from loss_stats_dataset import loss_cfg

K = 3
LOGITS = [[2.0, -1.0, 0.5, 0.1], [-0.3, 1.2, -2.5, 0.4], [0.7, -0.4, 3.0, 1.5]]
GT = [0, 2, 3]  # RoI 2 is background
R = len(GT)
ALPHA = 0.9
BG = 0.01


def adjusted_mean_ce(logits, gt, s):
    """(1/R) sum_i CE(z_i + log s, gt_i) and its gradient (s is a constant), from the scalar definitions."""
    shifted = [[z + math.log(s[j]) for j, z in enumerate(row)] for row in logits]
    loss = sum(ce(row, gt[i]) for i, row in enumerate(shifted)) / len(logits)
    grad = [[d / len(logits) for d in dce(row, gt[i])] for i, row in enumerate(shifted)]
    return loss, grad


def update_by_hand(s, entries, alpha=ALPHA, bg=BG):
    """The released update, one class at a time: entries = [(class, object score), ...]."""
    s = list(s)
    for c in sorted({c for c, _ in entries}):
        values = [v for cc, v in entries if cc == c]
        decay = alpha ** len(values)
        s[c] = decay * s[c] + (1 - decay) * sum(values) / len(values)
    s[-1] = bg
    return s


def roi_entries(logits, gt):
    """Without proposals every foreground RoI is one object: (class, softmax(z_i)[gt_i])."""
    return [(g, softmax(row)[g]) for row, g in zip(logits, gt) if g < len(row) - 1]


def test_loce_by_hand(check):
    loss = EquilibriumLoss(num_classes=K)
    start = [0.2, 0.05, 0.01, 0.01]
    loss.mean_score.copy_(torch.tensor(start))
    s = update_by_hand(start, roi_entries(LOGITS, GT))  # updated before use
    # RoI 0 (class 0) and RoI 1 (class 2) move s_0 and s_2 one step; s_1 keeps 0.05.
    assert s[1] == 0.05 and s[0] == pytest.approx(0.9 * 0.2 + 0.1 * softmax(LOGITS[0])[0])
    expected, grad = adjusted_mean_ce(LOGITS, GT, s)
    check(loss, LOGITS, GT, expected, grad)
    assert loss.mean_score.tolist() == pytest.approx(s, rel=1e-6)


def test_loce_pinned_value():
    # One RoI of class 0, zero logits, K = 1, s = [s0, 0.01] with alpha = 1 (frozen):
    # L = -log(s0 / (s0 + 0.01)), dL/dz = (s0, 0.01) / (s0 + 0.01) - (1, 0).
    loss = EquilibriumLoss(num_classes=1, momentum=1.0, initial_score=0.04)
    z = torch.zeros(1, 2, requires_grad=True)
    value = loss(z, torch.tensor([0]))
    value.backward()
    assert value.item() == pytest.approx(-math.log(0.04 / 0.05))
    torch.testing.assert_close(z.grad, torch.tensor([[0.8 - 1.0, 0.2]]))


def proposals_of(images):
    """images: list of (gt_classes, gt_boxes or None) per image -> list[Instances]."""
    from detectron2.structures import Boxes, Instances

    out = []
    for gt, boxes in images:
        p = Instances((100, 100), proposal_boxes=Boxes(torch.zeros(len(gt), 4)))
        p.gt_classes = torch.tensor(gt)
        if boxes is not None:
            p.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        out.append(p)
    return out


def test_loce_statistic_is_per_object(check):
    # Image A: RoIs 0, 1 matched to object a1 (class 0), RoI 2 to a2 (class 0, another box), RoI 3
    # background. Image B: RoI 4 matched to b1 (class 0, the same box as a1 but another image),
    # RoI 5 to b2 (class 1). Image C: no gt at all (no gt_boxes field), one background RoI.
    box1, box2, box3, bgbox = [1.0, 1.0, 5.0, 5.0], [2.0, 3.0, 9.0, 8.0], [0.0, 0.0, 4.0, 7.0], [0.0, 0.0, 1.0, 1.0]
    images = [([0, 0, 0, 3], [box1, box1, box2, bgbox]), ([0, 1], [box1, box3]), ([3], None)]
    gt = [0, 0, 0, 3, 0, 1, 3]
    logits = [[1.0, 0.2, -0.5, 0.0], [0.3, 0.1, 0.2, 0.9], [-1.0, 0.5, 0.7, 0.1], [0.2, 0.1, 0.0, 2.0],
              [2.5, -0.3, 0.1, 0.4], [0.0, 1.5, -0.2, 0.6], [0.4, 0.4, 0.4, 0.4]]
    p = [softmax(row) for row in logits]
    entries = [(0, (p[0][0] + p[1][0]) / 2), (0, p[2][0]), (0, p[4][0]), (1, p[5][1])]
    loss = EquilibriumLoss(num_classes=K)
    s = update_by_hand([0.01] * 4, entries)
    # class 0: three objects (alpha^3), each RoI of a1 weighing half; class 1: one object.
    assert s[0] == pytest.approx(ALPHA ** 3 * 0.01 + (1 - ALPHA ** 3) * sum(v for _, v in entries[:3]) / 3)
    expected, grad = adjusted_mean_ce(logits, gt, s)
    check(loss, logits, gt, expected, grad, proposals=proposals_of(images))
    assert loss.mean_score.tolist() == pytest.approx(s, rel=1e-6)


def test_loce_equal_mean_scores_is_softmax_ce(check):
    # alpha = 1 keeps s at its start; equal s_j in every column (background included) is a
    # constant shift of every logit: softmax CE, values and gradients.
    torch.manual_seed(0)
    logits = torch.randn(20, 6) * 3
    gt = torch.arange(20) % 6
    for start in (0.01, 0.3):
        loss = EquilibriumLoss(num_classes=5, momentum=1.0, initial_score=start, background_score=start)
        z1, z2, z3 = (logits.clone().requires_grad_() for _ in range(3))
        value = loss(z1, gt)
        reference = F.cross_entropy(z2, gt)
        baseline = SoftmaxCE(num_classes=5)(z3, gt)
        (value + reference + baseline).backward()
        torch.testing.assert_close(value, reference)
        torch.testing.assert_close(value, baseline)
        torch.testing.assert_close(z1.grad, z2.grad)
        torch.testing.assert_close(z1.grad, z3.grad)
        assert loss.mean_score.tolist() == pytest.approx([start] * 6)
    # The same by hand on the shared example.
    expected = sum(ce(row, GT[i]) for i, row in enumerate(LOGITS)) / R
    grad = [[d / R for d in dce(row, GT[i])] for i, row in enumerate(LOGITS)]
    check(EquilibriumLoss(num_classes=K, momentum=1.0), LOGITS, GT, expected, grad)


def test_loce_statistic_after_several_steps():
    torch.manual_seed(1)
    loss = EquilibriumLoss(num_classes=4, momentum=0.8, initial_score=0.05, background_score=0.02)
    s = [0.05] * 4 + [0.02]
    for _ in range(5):
        logits = torch.randn(12, 5) * 2
        gt = torch.randint(0, 5, (12,))
        loss(logits, gt)
        s = update_by_hand(s, roi_entries(logits.tolist(), gt.tolist()), alpha=0.8, bg=0.02)
        assert loss.mean_score.tolist() == pytest.approx(s, rel=1e-5)
    assert len({round(v, 6) for v in s[:4]}) == 4  # every class moved differently


def test_loce_momentum_zero_takes_the_step_mean():
    # alpha = 0: s_c becomes this step's mean object score; classes without an object keep theirs.
    loss = EquilibriumLoss(num_classes=K, momentum=0.0)
    loss.mean_score.copy_(torch.tensor([0.2, 0.05, 0.3, 0.01]))
    loss(torch.tensor(LOGITS), torch.tensor(GT))
    expected = [softmax(LOGITS[0])[0], 0.05, softmax(LOGITS[1])[2], BG]
    assert loss.mean_score.tolist() == pytest.approx(expected, rel=1e-6)


def test_loce_background_rois_leave_the_statistic():
    loss = EquilibriumLoss(num_classes=K, background_score=0.05)
    assert loss.mean_score.tolist() == pytest.approx([0.01, 0.01, 0.01, 0.05])
    loss(torch.randn(4, 4), torch.full((4,), K))
    assert loss.mean_score.tolist() == pytest.approx([0.01, 0.01, 0.01, 0.05])
    # The background entry is set to BACKGROUND_SCORE at every update, whatever was loaded.
    loss.mean_score[K] = 0.5
    loss(torch.tensor(LOGITS), torch.tensor(GT))
    assert loss.mean_score[K].item() == pytest.approx(0.05)


def test_loce_statistic_has_no_gradient_and_uses_unadjusted_logits():
    loss = EquilibriumLoss(num_classes=K)
    loss.mean_score.copy_(torch.tensor([0.5, 0.001, 0.2, 0.01]))
    z = torch.tensor(LOGITS, requires_grad=True)
    loss(z, torch.tensor(GT)).backward()
    assert not loss.mean_score.requires_grad
    # The adjusted softmax would give class 0 another score: the update reads softmax(z).
    assert loss.mean_score[0].item() == pytest.approx(0.9 * 0.5 + 0.1 * softmax(LOGITS[0])[0], rel=1e-6)


def test_loce_state_dict_round_trip():
    torch.manual_seed(2)
    loss = EquilibriumLoss(num_classes=K)
    for _ in range(3):
        loss(torch.randn(8, 4), torch.arange(8) % 4)
    state = loss.state_dict()
    assert set(state) == {"mean_score", "stats_num_classes"}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    restored = EquilibriumLoss(num_classes=K)
    assert not torch.equal(restored.mean_score, loss.mean_score)
    restored.load_state_dict(torch.load(buffer))
    assert torch.equal(restored.mean_score, loss.mean_score)
    logits, gt = torch.randn(8, 4), torch.arange(8) % 4
    assert torch.equal(loss(logits, gt), restored(logits, gt))
    assert torch.equal(loss.mean_score, restored.mean_score)


class Holder(torch.nn.Module):
    """A tiny model holding the loss where the box predictor does."""

    def __init__(self, num_classes):
        super().__init__()
        self.cls_loss = EquilibriumLoss(num_classes=num_classes)


def test_loce_wrong_length_statistic_is_refused(tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer

    trained = Holder(5)  # s has K + 1 = 6 entries
    trained.cls_loss(torch.randn(8, 6), torch.arange(8) % 6)
    DetectionCheckpointer(trained, save_dir=str(tmp_path)).save("loce")
    message = r"Loss 'loce'.*'cls_loss.mean_score'.*K = 5 classes.*MODEL.ROI_HEADS.NUM_CLASSES = 3"
    # detectron2's checkpointer drops a tensor of another shape with only a warning (s would restart
    # at 0.01); the loss refuses the checkpoint instead.
    with pytest.raises(ValueError, match=message):
        DetectionCheckpointer(Holder(K)).load(str(tmp_path / "loce.pth"))
    with pytest.raises(ValueError, match=message):
        Holder(K).load_state_dict(trained.state_dict())
    # Without the saved K (the statistic alone), its length K + 1 = 6 gives K = 5.
    with pytest.raises(ValueError, match=r"K = 5 classes.*NUM_CLASSES = 3"):
        EquilibriumLoss(num_classes=K).load_state_dict({"mean_score": torch.full((6,), 0.1)}, strict=False)


def test_loce_scores_are_the_plain_softmax():
    loss = EquilibriumLoss(num_classes=K)
    loss.mean_score.copy_(torch.tensor([0.5, 0.001, 0.2, 0.01]))
    scores = loss.scores(torch.tensor(LOGITS))
    for row, expected in zip(scores.tolist(), LOGITS):
        assert row == pytest.approx(softmax(expected))
    assert loss.num_logits(K) == K + 1


def test_loce_classifier_init():
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 1204)
    EquilibriumLoss(num_classes=1203).init_classifier(linear)
    assert linear.bias.abs().max().item() == 0.0
    assert linear.weight.std().item() == pytest.approx(0.01, rel=0.02)


def test_loce_config_keys_and_defaults():
    from lt_det.losses import build_loss

    cfg = loss_cfg("loce", dataset="lt_det_test_dataset_without_statistics")  # LOCE reads none
    loss = build_loss(cfg)
    assert isinstance(loss, EquilibriumLoss)
    assert (loss.momentum, loss.background_score, loss.sync) == (0.9, 0.01, True)
    assert loss.mean_score.tolist() == pytest.approx([0.01] * 7)
    cfg.MODEL.LT_LOSS.LOCE.MOMENTUM = 0.5
    cfg.MODEL.LT_LOSS.LOCE.INITIAL_SCORE = 0.2
    cfg.MODEL.LT_LOSS.LOCE.BACKGROUND_SCORE = 0.03
    cfg.MODEL.LT_LOSS.LOCE.SYNC = False
    loss = build_loss(cfg)
    assert (loss.momentum, loss.sync) == (0.5, False)
    assert loss.mean_score.tolist() == pytest.approx([0.2] * 6 + [0.03])


@pytest.mark.parametrize("kwargs, key", [({"momentum": 1.5}, "MOMENTUM"), ({"momentum": -0.1}, "MOMENTUM"),
                                         ({"background_score": 0.0}, "BACKGROUND_SCORE"),
                                         ({"initial_score": 2.0}, "INITIAL_SCORE")])
def test_loce_bad_hyper_parameters_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=f"MODEL.LT_LOSS.LOCE.{key}"):
        EquilibriumLoss(num_classes=K, **kwargs)


def test_loce_proposals_must_match_the_logits():
    images = [([0, 3], [[1.0, 1.0, 5.0, 5.0]] * 2)]  # 2 RoIs for 3 logits
    with pytest.raises(ValueError, match="proposals hold 2 RoIs but the logits 3"):
        EquilibriumLoss(num_classes=K)(torch.tensor(LOGITS), torch.tensor(GT), proposals=proposals_of(images))


# -- two processes: the statistic is gathered from both (SYNC) --------------------------------

# Step 1: both processes have foreground RoIs. Step 2: process 0 has an empty batch, process 1 not.
RANK_LOGITS = {0: [[2.0, -1.0, 0.5, 0.1], [0.3, 0.2, 0.1, 0.0]], 1: [[0.5, 0.5, -1.0, 0.2], [1.0, 0.0, 0.0, 2.0]]}
RANK_GT = {0: [0, 1], 1: [0, 3]}
STEP2_LOGITS = {0: [], 1: [[0.1, -0.2, 1.3, 0.0]]}
STEP2_GT = {0: [], 1: [2]}


def _sync_worker(rank, init_file, out_dir, sync):
    import datetime

    import torch.distributed as dist

    # A process left waiting in a gather fails after 30 s instead of hanging the test.
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=30))
    try:
        loss = EquilibriumLoss(num_classes=K, sync=sync)
        loss(torch.tensor(RANK_LOGITS[rank]), torch.tensor(RANK_GT[rank]))
        loss(torch.tensor(STEP2_LOGITS[rank]).reshape(-1, K + 1), torch.tensor(STEP2_GT[rank], dtype=torch.long))
        torch.save(loss.mean_score, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("sync", [True, False])
def test_loce_statistic_is_gathered_across_processes(sync, tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_sync_worker, args=(str(tmp_path / "init"), str(tmp_path), sync), nprocs=2, join=True)
    got = [torch.load(tmp_path / f"rank{r}.pt").tolist() for r in (0, 1)]
    step1 = {r: roi_entries(RANK_LOGITS[r], RANK_GT[r]) for r in (0, 1)}
    step2 = {r: roi_entries(STEP2_LOGITS[r], STEP2_GT[r]) for r in (0, 1)}
    start = [0.01] * 4
    if sync:  # both apply the union: step 1 gives class 0 two objects (one per process), class 1 one
        expected = update_by_hand(update_by_hand(start, step1[0] + step1[1]), step2[0] + step2[1])
        assert got[0] == pytest.approx(expected, rel=1e-6) and got[1] == pytest.approx(expected, rel=1e-6)
    else:
        for r in (0, 1):
            assert got[r] == pytest.approx(update_by_hand(update_by_hand(start, step1[r]), step2[r]), rel=1e-6)
        assert got[0] != pytest.approx(got[1])

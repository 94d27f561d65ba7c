"""LogitGradStats: EQL's Figure 1 totals (positive / negative |dL/dz_j| per class) recorded from
real backward passes, through the box predictor and the hook that writes them."""
import json
import math
import types

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

from detectron2.engine import AMPTrainer
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes, Instances
from detectron2.utils import comm
from detectron2.utils.events import EventStorage

from lt_det.engine import Trainer
from lt_det.engine.logit_grad_stats import LogitGradStats, LogitGradStatsHook
from lt_det.losses.softmax_ce import SoftmaxCE
from lt_det.modeling import LTFastRCNNOutputLayers

K = 3  # foreground classes of the predictor tests; label K = background
CHANNELS = 8


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def record_steps(stats, steps, loss_fn):
    """One real backward per (logits, gt_classes) step, the recorder observing; returns the
    logits' gradients."""
    grads = []
    for z, gt in steps:
        logits = torch.tensor(z, dtype=torch.float64, requires_grad=True)
        gt = torch.tensor(gt)
        stats.observe(logits, gt)
        loss_fn(logits, gt).backward()
        grads.append(logits.grad)
    return grads


def sigmoid_bce(logits, gt):
    """Sigmoid BCE summed over every column; targets one-hot over the 2 foreground classes, zero
    in the background column and on background rows."""
    targets = torch.zeros_like(logits)
    fg = gt < 2
    targets[fg, gt[fg]] = 1
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum")


def test_sigmoid_bce_two_steps_match_the_hand_computed_gradients():
    """dL/dz_ij = sigmoid(z_ij) - y_ij; K = 2 classes plus a background column (index 2)."""
    step1 = ([[1.0, -1.0, 0.5],    # class 0
              [0.0, 2.0, -0.5],    # class 1
              [-2.0, 0.5, 1.0]],   # background
             [0, 1, 2])
    step2 = ([[0.3, -0.7, 0.0],    # class 1
              [-1.5, 1.2, 2.0]],   # class 1
             [1, 1])
    # |sigmoid(z) - 1| where y = 1, sigmoid(z) where y = 0.
    pos_1 = [1 - sigmoid(1.0), 1 - sigmoid(2.0)]
    neg_1 = [sigmoid(0.0) + sigmoid(-2.0), sigmoid(-1.0) + sigmoid(0.5)]
    pos_2 = [0.0, (1 - sigmoid(-0.7)) + (1 - sigmoid(1.2))]
    neg_2 = [sigmoid(0.3) + sigmoid(-1.5), 0.0]

    stats = LogitGradStats(2)
    grads = record_steps(stats, [step1, step2], sigmoid_bce)

    assert stats.iterations == 2
    assert stats.pos.tolist() == pytest.approx([a + b for a, b in zip(pos_1, pos_2)], rel=1e-12, abs=0)
    assert stats.neg.tolist() == pytest.approx([a + b for a, b in zip(neg_1, neg_2)], rel=1e-12, abs=0)
    # The hook leaves the gradient as it is.
    assert grads[0][0].tolist() == pytest.approx([sigmoid(1.0) - 1, sigmoid(-1.0), sigmoid(0.5)], rel=1e-12)


def test_softmax_ce_matches_autograd_and_skips_the_background_column():
    gen = torch.Generator().manual_seed(0)
    steps = [(torch.randn(16, K + 1, generator=gen).tolist(),
              torch.randint(0, K + 1, (16,), generator=gen).tolist()) for _ in range(2)]
    stats = LogitGradStats(K)
    grads = record_steps(stats, steps, F.cross_entropy)

    pos, neg = [0.0] * K, [0.0] * K
    for grad, (_, gt) in zip(grads, steps):
        for i, label in enumerate(gt):
            for j in range(K):  # column K, background, is not a class column
                if label == j:
                    pos[j] += abs(grad[i, j].item())
                else:
                    neg[j] += abs(grad[i, j].item())
    assert stats.pos.shape == stats.neg.shape == (K,)
    assert stats.pos.tolist() == pytest.approx(pos, rel=1e-12)
    assert stats.neg.tolist() == pytest.approx(neg, rel=1e-12)
    assert stats.state() == {"num_classes": K, "iterations": 2, "pos": pytest.approx(pos, rel=1e-12),
                             "neg": pytest.approx(neg, rel=1e-12)}


def test_logits_without_grad_are_not_observed():
    stats = LogitGradStats(2)
    stats.observe(torch.zeros(3, 3), torch.tensor([0, 1, 2]))
    assert stats.iterations == 0


def predictor():
    torch.manual_seed(0)
    return LTFastRCNNOutputLayers(
        ShapeSpec(channels=CHANNELS), cls_loss=SoftmaxCE(num_classes=K), num_classes=K,
        box2box_transform=Box2BoxTransform(weights=(10, 10, 5, 5)),
        test_score_thresh=0.05, test_nms_thresh=0.5, test_topk_per_image=100,
    )


def batch():
    """(6, CHANNELS) features and one image's proposals with every class and background."""
    boxes = torch.tensor([[0, 0, 10, 10], [5, 5, 30, 20], [10, 0, 40, 40],
                          [0, 20, 15, 50], [20, 20, 60, 60], [30, 10, 50, 35]], dtype=torch.float32)
    p = Instances((64, 64))
    p.proposal_boxes = Boxes(boxes)
    p.gt_boxes = Boxes(boxes + 2)
    p.gt_classes = torch.tensor([0, 1, 2, K, 0, K])
    return torch.randn(len(boxes), CHANNELS, generator=torch.Generator().manual_seed(1)), [p]


def train_step(head, features, proposals):
    with EventStorage():
        losses = head.losses(head(features), proposals)
    sum(losses.values()).backward()


def test_predictor_losses_feed_the_recorder():
    head = predictor()
    features, proposals = batch()
    head.logit_grad_stats = stats = LogitGradStats(K)
    train_step(head, features, proposals)

    # Only loss_cls depends on the class logits: its gradient is the one recorded.
    gt = proposals[0].gt_classes
    logits = head(features)[0].detach().requires_grad_()
    F.cross_entropy(logits, gt).backward()
    magnitude = logits.grad[:, :K].abs().double()
    is_gt = gt[:, None] == torch.arange(K)
    assert stats.iterations == 1
    assert torch.allclose(stats.pos, (magnitude * is_gt).sum(0), rtol=1e-6, atol=0)
    assert torch.allclose(stats.neg, (magnitude * ~is_gt).sum(0), rtol=1e-6, atol=0)

    recorded = stats.state()
    head.eval()  # not training: not recorded
    train_step(head, features, proposals)
    head.train()
    head.logit_grad_stats = None  # detached: not recorded
    train_step(head, features, proposals)
    assert stats.state() == recorded


def fake_trainer(model, inner=None):
    return types.SimpleNamespace(model=model, _trainer=inner)


def model_with(box_predictor):
    model = nn.Module()
    model.roi_heads = nn.Module()
    model.roi_heads.box_predictor = box_predictor
    return model


def test_hook_attaches_through_ddp_and_writes_the_json_after_train(tmp_path):
    head = predictor()
    # Only the wrapper's type and ``.module`` matter to the hook: no process group needed.
    ddp = DistributedDataParallel.__new__(DistributedDataParallel)
    nn.Module.__init__(ddp)
    ddp.module = model_with(head)
    hook = LogitGradStatsHook(str(tmp_path / "out"))
    hook.trainer = fake_trainer(ddp)
    hook.before_train()
    assert head.logit_grad_stats is hook.stats
    train_step(head, *batch())
    hook.after_train()

    with open(tmp_path / "out" / "logit_grad_stats.json") as f:
        written = json.load(f)
    assert written["num_classes"] == K and written["iterations"] == 1
    assert written["pos"] == head.logit_grad_stats.pos.tolist()
    assert written["neg"] == head.logit_grad_stats.neg.tolist()
    assert sum(written["pos"]) > 0 and sum(written["neg"]) > 0


def test_hook_writes_nothing_outside_the_main_process(tmp_path, monkeypatch):
    monkeypatch.setattr(comm, "is_main_process", lambda: False)
    hook = LogitGradStatsHook(str(tmp_path))
    hook.trainer = fake_trainer(model_with(predictor()))
    hook.before_train()
    hook.after_train()
    assert not (tmp_path / "logit_grad_stats.json").exists()


@pytest.mark.parametrize("box_predictor, inner, error", [
    (nn.ModuleList([nn.Linear(1, 1)]), None, TypeError),  # cascade heads: one predictor per stage
    (None, AMPTrainer.__new__(AMPTrainer), ValueError),
], ids=["cascade", "amp"])
def test_hook_refuses_what_it_cannot_record(box_predictor, inner, error, tmp_path):
    hook = LogitGradStatsHook(str(tmp_path))
    hook.trainer = fake_trainer(model_with(predictor() if box_predictor is None else box_predictor), inner)
    with pytest.raises(error, match="LOGIT_GRAD_STATS"):
        hook.before_train()
    hook.after_train()  # runs in train()'s ``finally``: must not hide the error above
    assert not (tmp_path / "logit_grad_stats.json").exists()


def test_trainer_adds_the_hook_only_when_asked(quick_cfg):
    assert not any(isinstance(h, LogitGradStatsHook) for h in Trainer(quick_cfg())._hooks)
    trainer = Trainer(quick_cfg("DIAGNOSTICS.LOGIT_GRAD_STATS", True))
    (hook,) = [h for h in trainer._hooks if isinstance(h, LogitGradStatsHook)]
    hook.before_train()
    assert trainer.model.roi_heads.box_predictor.logit_grad_stats is hook.stats

"""Federated loss: equal to detectron2 main's use_fed_loss path under the same RNG state.

``main_fed_loss`` below re-implements detectron2 main's ``FastRCNNOutputLayers
.sigmoid_cross_entropy_loss`` with ``use_fed_loss=True`` (its ``get_fed_loss_classes`` sampling,
``get_fed_loss_cls_weights`` weights ``image_count ** power``), independently of lt_det.
"""
import math

import pytest
import torch
from torch.nn import functional as F

from lt_det.losses.federated import FederatedLoss

from loss_reference import bce, dbce, onehot_row


# Every test here runs on the fused path and on the reference.
pytestmark = pytest.mark.usefixtures("both_implementations")


def main_fed_loss(pred_class_logits, gt_classes, image_count, num_fed_classes=50, power=0.5):
    num_rois, num_classes = pred_class_logits.shape[0], pred_class_logits.shape[1] - 1
    weight = torch.tensor(image_count).float() ** power
    target = pred_class_logits.new_zeros(num_rois, num_classes + 1)
    target[range(len(gt_classes)), gt_classes] = 1
    target = target[:, :num_classes]
    cls_loss = F.binary_cross_entropy_with_logits(pred_class_logits[:, :-1], target, reduction="none")
    # get_fed_loss_classes
    unique_gt = torch.unique(gt_classes)
    prob = unique_gt.new_ones(num_classes + 1).float()
    prob[-1] = 0
    if len(unique_gt) < num_fed_classes:
        prob[:num_classes] = weight.float().clone()
        prob[unique_gt] = 0
        sampled = torch.multinomial(prob, num_fed_classes - len(unique_gt), replacement=False)
        fed_classes = torch.cat([unique_gt, sampled])
    else:
        fed_classes = unique_gt
    mask = fed_classes.new_zeros(num_classes + 1)
    mask[fed_classes] = 1
    mask = mask[:num_classes]
    w = mask.view(1, num_classes).expand(num_rois, num_classes).float()
    return torch.sum(cls_loss * w) / num_rois


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_detectron2_main_under_same_rng_state(seed):
    num_classes = 120
    gen = torch.Generator().manual_seed(100 + seed)
    image_count = torch.randint(1, 500, (num_classes,), generator=gen).tolist()
    logits = torch.randn(64, num_classes + 1, generator=gen) * 3
    gt = torch.randint(0, num_classes + 1, (64,), generator=gen)
    gt[:20] = num_classes
    z1, z2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours_loss = FederatedLoss(num_classes=num_classes, image_count=image_count)
    torch.manual_seed(seed)
    ours = ours_loss(z1, gt)
    torch.manual_seed(seed)
    theirs = main_fed_loss(z2, gt, image_count)
    ours.backward()
    theirs.backward()
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-5, atol=1e-8)
    assert z1.grad[:, -1].eq(0).all()  # the background logit gets no gradient


def test_every_class_sampled_is_bce(check):
    logits = [[2.0, -1.0, 0.5, 9.0], [-0.3, 1.2, -2.5, 9.0], [0.7, -0.4, 3.0, 9.0]]
    gt = [0, 2, 3]
    loss = FederatedLoss(num_classes=3, image_count=[4, 1, 9], num_sampled=50)  # 50 > K: all classes
    total = sum(bce(z, onehot_row(gt[i], 3)[j]) for i, row in enumerate(logits) for j, z in enumerate(row[:3]))
    grad = [
        [dbce(z, onehot_row(gt[i], 3)[j]) / 3 for j, z in enumerate(row[:3])] + [0.0] for i, row in enumerate(logits)
    ]
    check(loss, logits, gt, total / 3, grad)


def test_only_sampled_classes_contribute():
    torch.manual_seed(0)
    loss = FederatedLoss(num_classes=10, image_count=[1] * 10, num_sampled=4)
    gt = torch.tensor([2, 7, 10])  # S = {2, 7, bg}: one more class is drawn
    z = torch.zeros(3, 11, requires_grad=True)
    loss(z, gt).backward()
    used = (z.grad[:, :10] != 0).any(dim=0)
    assert used[2] and used[7] and used.sum() == 3


def test_layouts():
    sigmoid = FederatedLoss(num_classes=4, image_count=[1, 2, 3, 4])
    gumbel = FederatedLoss(num_classes=4, image_count=[1, 2, 3, 4], activation="gumbel")
    assert sigmoid.num_logits(4) == 5 and gumbel.num_logits(4) == 4  # GOL: C logits
    z = torch.zeros(2, 4)
    assert gumbel.scores(z)[:, :4].allclose(torch.full((2, 4), math.exp(-1.0))) and gumbel.scores(z)[:, 4].eq(0).all()

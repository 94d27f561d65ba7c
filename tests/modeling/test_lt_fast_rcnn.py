"""LTFastRCNNOutputLayers: detectron2's predictor with softmax CE, any registered loss otherwise."""
import pytest
import torch

import lt_det  # noqa: F401
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from lt_det.losses import build_loss, list_losses
from lt_det.losses.softmax_ce import SoftmaxCE
from lt_det.modeling import LTFastRCNNOutputLayers

from loss_stats_dataset import FREQUENCY, NUM_CLASSES, loss_cfg

CHANNELS = 16
PREDICTOR_ARGS = dict(
    box2box_transform=Box2BoxTransform(weights=(10, 10, 5, 5)),
    num_classes=NUM_CLASSES,
    test_score_thresh=0.05,
    test_nms_thresh=0.5,
    test_topk_per_image=100,
)


def predictor(cls_loss, **kwargs):
    return LTFastRCNNOutputLayers(ShapeSpec(channels=CHANNELS), cls_loss=cls_loss, **PREDICTOR_ARGS, **kwargs)


def seeded_batch(seed=0, num_images=2, per_image=24):
    gen = torch.Generator().manual_seed(seed)
    proposals = []
    for _ in range(num_images):
        xy = torch.rand(per_image, 2, generator=gen) * 50
        wh = torch.rand(per_image, 2, generator=gen) * 40 + 5
        boxes = torch.cat([xy, xy + wh], dim=1)
        p = Instances((100, 120))
        p.proposal_boxes = Boxes(boxes)
        p.gt_boxes = Boxes(boxes + torch.randn(per_image, 4, generator=gen) * 3)
        p.gt_classes = torch.randint(0, NUM_CLASSES + 1, (per_image,), generator=gen)
        proposals.append(p)
    features = torch.randn(num_images * per_image, CHANNELS, generator=gen)
    return features, proposals


def run_step(head, features, proposals):
    head.zero_grad()
    with EventStorage() as storage:
        predictions = head(features)
        losses = head.losses(predictions, proposals)
        sum(losses.values()).backward()
        scalars = {k: v[0] for k, v in storage.latest().items()}
    head.eval()
    with torch.no_grad():
        instances, kept = head.inference(head(features), proposals)
    head.train()
    return losses, scalars, instances, kept


def test_softmax_ce_reproduces_detectron2_exactly():
    torch.manual_seed(0)
    theirs = FastRCNNOutputLayers(ShapeSpec(channels=CHANNELS), **PREDICTOR_ARGS)
    ours = predictor(SoftmaxCE(num_classes=NUM_CLASSES))
    ours.load_state_dict(theirs.state_dict())
    features, proposals = seeded_batch()
    losses_t, scalars_t, inst_t, kept_t = run_step(theirs, features, proposals)
    losses_o, scalars_o, inst_o, kept_o = run_step(ours, features, proposals)
    assert losses_t.keys() == losses_o.keys()
    for k in losses_t:
        assert torch.equal(losses_t[k], losses_o[k]), k
    for (name, p_t), p_o in zip(theirs.named_parameters(), ours.parameters()):
        assert torch.equal(p_t.grad, p_o.grad), name
    assert scalars_t == {k: v for k, v in scalars_o.items() if k in scalars_t}
    assert sum(len(i) for i in inst_t) > 0
    for a, b, ka, kb in zip(inst_t, inst_o, kept_t, kept_o):
        assert torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor)
        assert torch.equal(a.scores, b.scores) and torch.equal(a.pred_classes, b.pred_classes)
        assert torch.equal(ka, kb)


def test_empty_proposals_give_connected_zero_losses():
    head = predictor(SoftmaxCE(num_classes=NUM_CLASSES))
    with EventStorage():
        losses = head.losses(head(torch.zeros(0, CHANNELS)), [])
    assert all(v.item() == 0 for v in losses.values())
    sum(losses.values()).backward()


def test_per_frequency_group_statistics():
    # K = 6 with groups r r c c f f; columns of the one-hot logits are the predicted class.
    head = predictor(SoftmaxCE(num_classes=NUM_CLASSES), class_frequency=FREQUENCY)
    gt = torch.tensor([0, 1, 2, 3, 4, 6])
    predicted = torch.tensor([0, 6, 3, 3, 4, 6])  # r: hit, miss(bg); c: wrong, hit; f: hit; bg: hit
    logits = torch.nn.functional.one_hot(predicted, NUM_CLASSES + 1).float()
    with EventStorage() as storage:
        head._log_classification_stats(logits, gt)
        got = {k: v[0] for k, v in storage.latest().items()}
    assert got == {
        "fast_rcnn/cls_accuracy": 4 / 6,
        "fast_rcnn/fg_cls_accuracy": 3 / 5,
        "fast_rcnn/false_negative": 1 / 5,
        "fast_rcnn/fg_cls_accuracy_r": 1 / 2,
        "fast_rcnn/false_negative_r": 1 / 2,
        "fast_rcnn/fg_cls_accuracy_c": 1 / 2,
        "fast_rcnn/false_negative_c": 0.0,
        "fast_rcnn/fg_cls_accuracy_f": 1.0,
        "fast_rcnn/false_negative_f": 0.0,
    }


@pytest.mark.parametrize("name", [n for n in list_losses() if not n.startswith("test_")])
def test_every_loss_trains_and_infers_through_the_predictor(name):
    torch.manual_seed(0)
    cfg = loss_cfg(name)
    head = predictor(build_loss(cfg), class_frequency=FREQUENCY)
    assert head.cls_score.out_features == head.cls_loss.num_logits(NUM_CLASSES)
    features, proposals = seeded_batch()
    losses, scalars, instances, _ = run_step(head, features, proposals)
    assert torch.isfinite(losses["loss_cls"]) and head.cls_score.weight.grad.abs().sum() > 0
    assert "fast_rcnn/fg_cls_accuracy_f" in scalars
    assert len(instances) == 2 and all((i.pred_classes < NUM_CLASSES).all() for i in instances)


def gumbel_predictor(temperature, name="gumbel_ce", *opts):
    torch.manual_seed(0)
    cfg = loss_cfg(name)
    cfg.merge_from_list(list(opts))
    return predictor(build_loss(cfg), gumbel_temperature=temperature)


@pytest.mark.parametrize("name, opts", [("gumbel_ce", ()), ("droploss", ("MODEL.LT_LOSS.ACTIVATION", "gumbel"))])
def test_gumbel_temperature_divides_the_logits_of_loss_scores_and_gradients(name, opts):
    # beta = 2: eta(z / 2) in the loss and the scores, i.e. beta = 1 on the predictor's linear
    # output halved; the gradient of the linear layer is halved with it (chain rule).
    standard, scaled = gumbel_predictor(1.0, name, *opts), gumbel_predictor(2.0, name, *opts)
    scaled.load_state_dict(standard.state_dict())
    features, proposals = seeded_batch()
    z = standard.cls_score(features)
    logits, _ = scaled(features)
    torch.testing.assert_close(logits, z / 2)
    probs = scaled.predict_probs(scaled(features), proposals)[0]
    eta = torch.exp(-torch.exp(-(z[: len(probs), :NUM_CLASSES] / 2)))
    torch.testing.assert_close(probs[:, :NUM_CLASSES], eta)
    # the loss at beta = 2 is the standard predictor's loss on logits z / 2
    with EventStorage():
        torch.manual_seed(1)
        loss_scaled = scaled.losses(scaled(features), proposals)["loss_cls"]
    torch.manual_seed(1)
    loss_ref = standard.cls_loss(z / 2, torch.cat([p.gt_classes for p in proposals]), proposals=proposals)
    torch.testing.assert_close(loss_scaled, loss_ref)


def test_gumbel_temperature_one_changes_nothing():
    standard = gumbel_predictor(1.0)
    features, _ = seeded_batch()
    torch.testing.assert_close(standard(features)[0], standard.cls_score(features), rtol=0, atol=0)


def test_gumbel_temperature_needs_a_gumbel_loss_and_a_positive_value():
    with pytest.raises(ValueError, match="needs a Gumbel activation"):
        predictor(build_loss(loss_cfg("sigmoid_ce")), gumbel_temperature=2.0)
    with pytest.raises(ValueError, match="must be > 0"):
        gumbel_predictor(0.0)

"""LOCE's memory-augmented feature sampling (MFS): the jitter, the per-class rings, the draw, the
statistic's object per drawn class, the warm-up pass, and training steps with it."""
import pytest
import torch

from detectron2.engine import SimpleTrainer
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

import lt_det.modeling  # noqa: F401  (registers the LT ROI heads)
from lt_det.data import get_class_stats
from lt_det.engine.hooks import MFSWarmupHook
from lt_det.engine.trainer import Trainer
from lt_det.losses.loce import object_scores
from lt_det.modeling.feature_memory import ClassFeatureMemory, jitter_boxes, warmup_image_indices


def test_jitter_gives_one_box_per_sign_pattern_within_a_sixth_of_the_size():
    torch.manual_seed(0)
    box = torch.tensor([[30.0, 20.0, 60.0, 80.0]])  # w = 30, h = 60: |dx| <= 5, |dy| <= 10
    jittered = jitter_boxes(box, (100, 100))
    offsets = jittered - box
    assert jittered.shape == (16, 4)
    assert (offsets[:, 0::2].abs() <= 5).all() and (offsets[:, 1::2].abs() <= 10).all()
    signs = {tuple(int(v) for v in row) for row in torch.sign(offsets)}
    assert len(signs) == 16  # every (s1, s2, s3, s4) in {-1, +1}^4 once


def test_jitter_is_clamped_to_the_image():
    torch.manual_seed(0)
    box = torch.tensor([[0.0, 0.0, 12.0, 18.0]])  # at the top-left corner of a 18 x 12 image
    jittered = jitter_boxes(box, (18, 12))  # (height, width)
    assert (jittered[:, 0::2] >= 0).all() and (jittered[:, 0::2] <= 12).all()
    assert (jittered[:, 1::2] >= 0).all() and (jittered[:, 1::2] <= 18).all()
    assert (jittered[:, 0] == 0).sum() == 8  # x1 moved left (s1 = -1) is clamped to 0: 8 patterns


def entries(values, c):
    """Features filled with their value, class c, box (v, v, v + 1, v + 1), gt box (0, 0, 1, 1)."""
    v = torch.tensor(values, dtype=torch.float)
    return (v[:, None, None, None].expand(-1, 2, 1, 1).clone(), torch.full((len(v),), c),
            torch.stack([v, v, v + 1, v + 1], dim=1), torch.tensor([[0.0, 0.0, 1.0, 1.0]]).expand(len(v), 4))


def test_each_class_keeps_the_first_entries_of_a_push_in_a_ring():
    memory = ClassFeatureMemory(queue_size=3, sampled_classes=1, samples_per_class=1)
    memory.push(*entries([1, 2], c=4))
    assert memory.stored(4) == 2 and memory.stored(0) == 0
    memory.push(*entries([3, 4, 5, 6], c=4))  # more than the ring holds: the first 3 of this push
    assert memory.stored(4) == 3
    assert sorted(memory.features[4][:, 0, 0, 0].tolist()) == [3.0, 4.0, 5.0]
    memory.push(*entries([7], c=4))  # the ring's next slot held 3, the oldest
    assert sorted(memory.features[4][:, 0, 0, 0].tolist()) == [4.0, 5.0, 7.0]
    # the box pairs stay with their features
    for f, pair in zip(memory.features[4][:, 0, 0, 0], memory.boxes[4]):
        assert pair.tolist() == [f, f, f + 1, f + 1, 0.0, 0.0, 1.0, 1.0]


def test_draw_weights_classes_by_inverse_mean_score_and_empty_queues_give_nothing():
    torch.manual_seed(0)
    memory = ClassFeatureMemory(queue_size=4, sampled_classes=8, samples_per_class=4)
    assert memory.sample(torch.full((6,), 0.5), 6, "cpu") is None  # empty memory: nothing to draw
    memory.push(*entries([1, 2], c=1))
    memory.push(*entries([3], c=3))
    # s_3 = 1e-6: weight 1 / (1e-6 + 1e-7) ~ 9.1e5 against ~1 for the others (s = 1), so
    # P(another class) per draw ~ 5.5e-6: every draw is class 3, 4 entries each.
    s = torch.tensor([1.0, 1.0, 1.0, 1e-6, 1.0, 1.0, 0.0])  # (K + 1,): the background entry is not drawn
    batch = memory.sample(s, 6, "cpu")
    assert batch.classes.tolist() == [3] * 32
    assert (batch.features == 3.0).all() and batch.boxes.tolist() == [[3.0, 3.0, 4.0, 4.0]] * 32
    # the weakest class (s_5 = 0: weight 1e7) has no entry: its draws give nothing
    assert memory.sample(torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 0.0]), 6, "cpu") is None
    # equal scores: only classes 1 and 3 give entries, each from its own class's ring
    batch = memory.sample(torch.full((6,), 0.5), 6, "cpu")
    assert set(batch.classes.tolist()) <= {1, 3} and len(batch.classes) % 4 == 0
    for c, f in zip(batch.classes, batch.features[:, 0, 0, 0]):
        assert f.item() in ({1.0, 2.0} if c == 1 else {3.0})


def test_warmup_takes_each_class_images_cyclically_and_splits_them_by_rank():
    # per class 2 images on 2 processes: 4 per class, cycled from the class's images in order
    per_class = [[0, 1], [2], [5, 6, 7]]
    assert warmup_image_indices(per_class, 2, rank=0, world_size=2) == [0, 1, 2, 2, 5, 6]
    assert warmup_image_indices(per_class, 2, rank=1, world_size=2) == [0, 1, 2, 2, 7, 5]
    assert warmup_image_indices(per_class, 1) == [0, 2, 5]


def test_loce_counts_the_entries_of_one_drawn_class_as_one_object():
    # Image 0: two RoIs of one gt object (class 0). The memory "image": four entries with distinct
    # gt boxes, two of class 1 and two of class 2, named by their class: 1 + 2 objects.
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0],
                           [0.0, 1.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    gt = torch.tensor([0, 0, 1, 1, 2, 2])
    image = Instances((10, 10), gt_classes=gt[:2], gt_boxes=Boxes(torch.tensor([[0.0, 0, 5, 5]] * 2)),
                      proposal_boxes=Boxes(torch.zeros(2, 4)))
    memory = Instances((10, 10), gt_classes=gt[2:], gt_boxes=Boxes(torch.arange(16.0).view(4, 4)),
                       proposal_boxes=Boxes(torch.zeros(4, 4)))
    memory.gt_object_ids = gt[2:]
    labels, values = object_scores(logits, gt, [image, memory])
    p = torch.softmax(logits, dim=1)
    by_class = dict(zip(labels.tolist(), values.tolist()))
    assert len(labels) == 3
    assert by_class[0] == pytest.approx(float(p[0, 0] + p[1, 0]) / 2)
    assert by_class[1] == pytest.approx(float(p[2, 1] + p[3, 1]) / 2)
    assert by_class[2] == pytest.approx(float(p[4, 2] + p[5, 2]) / 2)


def mfs_cfg(quick_cfg, *opts):
    # 400 draws over the tiny set's classes: every step draws a class with stored entries
    return quick_cfg("MODEL.ROI_HEADS.NAME", "LTStandardROIHeads", "MODEL.LT_LOSS.NAME", "loce",
                     "MODEL.ROI_HEADS.MFS.ENABLED", True, "MODEL.ROI_HEADS.MFS.SAMPLED_CLASSES", 400,
                     "MODEL.ROI_HEADS.MFS.SAMPLES_PER_CLASS", 2, *opts)


def test_training_with_mfs_adds_the_drawn_entries_to_the_box_losses(quick_cfg, monkeypatch):
    torch.manual_seed(0)
    cfg = mfs_cfg(quick_cfg)
    model = build_model(cfg)
    predictor = model.roi_heads.box_predictor
    seen = []
    losses = predictor.losses

    def spy(predictions, proposals):
        seen.append((len(predictions[0]), [len(p) for p in proposals], proposals[-1]))
        return losses(predictions, proposals)

    monkeypatch.setattr(predictor, "losses", spy)
    trainer = SimpleTrainer(model, Trainer.build_train_loader(cfg), build_optimizer(cfg, model))
    trainer.train(0, 2)
    assert len(seen) == 2
    memory = model.roi_heads.memory
    assert sum(memory.stored(c) for c in range(cfg.MODEL.ROI_HEADS.NUM_CLASSES)) > 0
    for rows, lengths, last in seen:
        assert lengths[-1] > 0 and lengths[-1] % 2 == 0 and rows == sum(lengths)  # 2 per drawn class, last
        assert last.has("gt_object_ids") and (last.gt_classes == last.gt_object_ids).all()
        assert all(memory.stored(int(c)) > 0 for c in last.gt_classes)
    values = trainer.storage.history("loss_cls").values()
    assert all(torch.isfinite(torch.tensor(v)) for v, _ in values)
    assert not any("memory" in k for k in model.state_dict())  # the rings are not checkpointed


def test_mfs_needs_the_loce_loss(quick_cfg):
    with pytest.raises(ValueError, match="MODEL.LT_LOSS.NAME 'loce'"):
        build_model(mfs_cfg(quick_cfg, "MODEL.LT_LOSS.NAME", "softmax_ce"))


def test_without_mfs_the_roi_heads_have_no_memory(quick_cfg):
    cfg = quick_cfg("MODEL.ROI_HEADS.NAME", "LTStandardROIHeads", "MODEL.LT_LOSS.NAME", "loce")
    assert build_model(cfg).roi_heads.memory is None


def test_warmup_fills_the_memory_and_warms_the_scores_without_changing_the_weights(quick_cfg):
    torch.manual_seed(0)
    cfg = mfs_cfg(quick_cfg, "MODEL.ROI_HEADS.MFS.WARMUP_IMAGES_PER_CLASS", 1, "SOLVER.MAX_ITER", 1)
    trainer = Trainer(cfg)
    hook = next(h for h in trainer._hooks if isinstance(h, MFSWarmupHook))
    model = trainer.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with EventStorage(0):
        hook.before_train()
    stats = get_class_stats(cfg.DATASETS.TRAIN[0])
    present = (torch.as_tensor(stats.instance_count) > 0).nonzero().squeeze(1).tolist()
    memory, loce = model.roi_heads.memory, model.roi_heads.box_predictor.cls_loss
    assert hook.num_images == len(present)  # one image per class present
    assert all(memory.stored(c) > 0 for c in present)
    assert (loce.mean_score[present] != 0.01).any()  # warmed
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed == ["roi_heads.box_predictor.cls_loss.mean_score"]

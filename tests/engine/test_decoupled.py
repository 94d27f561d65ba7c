"""Stage-2 freezing, BatchNorm pinning and stage-1 loading on a toy model with detectron2's names."""
import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import get_cfg
from detectron2.engine import SimpleTrainer
from detectron2.solver import build_optimizer

from lt_det.engine.decoupled import (
    freeze_all_but,
    load_stage1_checkpoint,
    load_stage1_weights,
    pin_batchnorm_eval,
    prepare_stage2_model,
)
from lt_det.engine.decoupled_config import add_decoupled_config
from lt_det.modeling.disalign import DisAlignLinear
from lt_det.modeling.lws import LWSLinear

C = 3  # foreground classes
CLS = "roi_heads.box_predictor.cls_score"


class ToyDetector(nn.Module):
    """backbone (conv + BatchNorm) -> box head -> predictor (cls_score, bbox_pred), as detectron2
    names them; forward returns a loss dict like GeneralizedRCNN in training."""

    def __init__(self, num_logits=C + 1):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.roi_heads = nn.Module()
        self.roi_heads.box_head = nn.Linear(4, 8)
        self.roi_heads.box_predictor = nn.Module()
        self.roi_heads.box_predictor.cls_score = nn.Linear(8, num_logits)
        self.roi_heads.box_predictor.bbox_pred = nn.Linear(8, 4)

    def forward(self, batch):
        images, labels = batch
        x = F.relu(self.roi_heads.box_head(self.backbone(images)))
        predictor = self.roi_heads.box_predictor
        return {
            "loss_cls": F.cross_entropy(predictor.cls_score(x)[:, : C + 1], labels),
            "loss_box_reg": predictor.bbox_pred(x).pow(2).mean(),
        }


def toy_batches(seed=0):
    g = torch.Generator().manual_seed(seed)
    while True:
        yield torch.randn(4, 3, 8, 8, generator=g), torch.randint(C + 1, (4,), generator=g)


def stage2_cfg(**decoupled):
    cfg = get_cfg()
    add_decoupled_config(cfg)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = C
    cfg.SOLVER.BASE_LR = 0.1
    cfg.SOLVER.MOMENTUM = 0.9
    cfg.SOLVER.WEIGHT_DECAY = 0.1  # would move any frozen tensor that reached the optimizer
    cfg.DECOUPLED.ENABLED = True
    for key, value in decoupled.items():
        cfg.DECOUPLED[key] = value
    return cfg


def train_few_steps(model, cfg, steps=3):
    optimizer = build_optimizer(cfg, model)
    trainer = SimpleTrainer(model, toy_batches(), optimizer)
    trainer.train(0, steps)
    return optimizer


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def save_stage1(tmp_path, model):
    path = str(tmp_path / "stage1.pth")
    torch.save({"model": model.state_dict(), "iteration": 10}, path)
    return path


# ---- parameter selection ----------------------------------------------------------------------

@pytest.mark.parametrize(
    "patterns, expected",
    [
        ([CLS], [f"{CLS}.weight", f"{CLS}.bias"]),
        (["*cls_score*"], [f"{CLS}.weight", f"{CLS}.bias"]),
        (["roi_heads.box_head", f"{CLS}.weight"], ["roi_heads.box_head.weight", "roi_heads.box_head.bias", f"{CLS}.weight"]),
        (["roi_heads"], [n for n, _ in ToyDetector().named_parameters() if n.startswith("roi_heads.")]),
    ],
)
def test_freeze_all_but_selects_by_pattern(patterns, expected):
    model = ToyDetector()
    assert freeze_all_but(model, patterns) == expected
    assert [n for n, p in model.named_parameters() if p.requires_grad] == expected


def test_pattern_matching_nothing_is_an_error():
    with pytest.raises(ValueError, match="'roi_heads.cls_score' matches no parameter"):
        freeze_all_but(ToyDetector(), [CLS, "roi_heads.cls_score"])
    with pytest.raises(ValueError, match="empty"):
        freeze_all_but(ToyDetector(), [])


def test_batchnorm_stays_in_eval_after_model_train():
    model = ToyDetector()
    assert pin_batchnorm_eval(model) == ["backbone.1"]
    model.train()
    assert model.training and model.roi_heads.box_head.training
    assert not model.backbone[1].training


# ---- training: frozen bit-identical, trainable changed, optimizer holds only trainable ----------

@pytest.mark.parametrize("patterns", [[CLS], ["roi_heads.box_head", CLS], ["backbone.1"]])
def test_few_steps_change_exactly_the_trainable_tensors(patterns):
    model = ToyDetector()
    cfg = stage2_cfg(TRAINABLE=patterns)
    trainable = prepare_stage2_model(model, cfg)
    before = snapshot(model)
    optimizer = train_few_steps(model, cfg)

    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert in_optimizer == {id(p) for n, p in model.named_parameters() if n in trainable}
    for name, value in model.state_dict().items():
        if name in trainable:
            assert not torch.equal(value, before[name]), f"{name} did not train"
        else:  # frozen parameters and every buffer, BatchNorm running statistics included
            assert torch.equal(value, before[name]), f"{name} changed"


def test_stage2_logs_what_trains(caplog):
    with caplog.at_level(logging.INFO, logger="lt_det.engine.decoupled"):
        prepare_stage2_model(ToyDetector(), stage2_cfg())
    total = sum(p.numel() for p in ToyDetector().parameters())
    assert f"trains 36 of {total:,} parameters, in 2 tensor(s)" in caplog.text
    assert f"{CLS}.weight (4, 8)" in caplog.text  # 8 * 4 weights + 4 biases = 36


def test_precise_bn_is_refused():
    cfg = stage2_cfg()
    cfg.TEST.PRECISE_BN.ENABLED = True
    with pytest.raises(ValueError, match="PRECISE_BN"):
        prepare_stage2_model(ToyDetector(), cfg)


# ---- stage-1 loading and classifier re-initialisation ----------------------------------------

@pytest.mark.parametrize(
    "stage2_logits, mode, reinit",
    [(C + 1, "auto", False), (C + 6, "auto", True), (C + 1, "reinit", True), (C + 1, "keep", False)],
)
def test_classifier_reinitialised_exactly_when_asked_or_logit_count_changes(tmp_path, stage2_logits, mode, reinit):
    torch.manual_seed(0)
    stage1 = ToyDetector()
    path = save_stage1(tmp_path, stage1)
    torch.manual_seed(1)
    model = ToyDetector(stage2_logits)
    freeze_all_but(model, [CLS])
    fresh = snapshot(model)

    assert load_stage1_checkpoint(model, path, classifier_init=mode) is reinit
    source = fresh if reinit else stage1.state_dict()
    for key in (f"{CLS}.weight", f"{CLS}.bias"):
        assert torch.equal(model.state_dict()[key], source[key])
    for key, value in model.state_dict().items():
        if not key.startswith(CLS):
            assert torch.equal(value, stage1.state_dict()[key]), key


def test_keep_with_another_logit_count_is_an_error(tmp_path):
    path = save_stage1(tmp_path, ToyDetector())
    with pytest.raises(ValueError, match="does not match the model's"):
        load_stage1_checkpoint(ToyDetector(C + 2), path, classifier_init="keep")


def test_reinitialised_classifier_must_train(tmp_path):
    path = save_stage1(tmp_path, ToyDetector())
    model = ToyDetector(C + 2)
    freeze_all_but(model, ["roi_heads.box_head"])
    with pytest.raises(ValueError, match="re-initialised but frozen"):
        load_stage1_checkpoint(model, path)


def test_missing_checkpoint_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="Stage-1 checkpoint not found"):
        load_stage1_checkpoint(ToyDetector(), str(tmp_path / "nope.pth"))


def test_truncated_checkpoint_is_an_error_naming_it(tmp_path):
    path = save_stage1(tmp_path, ToyDetector())
    with open(path, "r+b") as f:
        f.truncate(64)
    with pytest.raises(RuntimeError, match=f"Checkpoint {path} is unreadable"):
        load_stage1_checkpoint(ToyDetector(), path)


def test_checkpoint_of_another_model_is_an_error(tmp_path):
    other = ToyDetector()
    other.roi_heads.box_head = nn.Linear(4, 16)  # another box head width
    other.roi_heads.box_predictor.cls_score = nn.Linear(16, C + 1)
    with pytest.raises(ValueError, match=r"does not match the model: 0 tensors missing .* 2 with another shape \['roi_heads.box_head.weight"):
        load_stage1_checkpoint(ToyDetector(), save_stage1(tmp_path, other))
    state = ToyDetector().state_dict()
    del state["backbone.1.running_mean"]
    path = str(tmp_path / "partial.pth")
    torch.save({"model": state}, path)
    with pytest.raises(ValueError, match=r"1 tensors missing \['backbone.1.running_mean'\]"):
        load_stage1_checkpoint(ToyDetector(), path)


def test_predictor_may_gain_or_lose_state(tmp_path):
    stage1 = ToyDetector()
    stage1.roi_heads.box_predictor.register_buffer("old_loss_counts", torch.ones(C))
    model = ToyDetector()
    model.roi_heads.box_predictor.register_buffer("new_loss_counts", torch.zeros(C))
    load_stage1_checkpoint(model, save_stage1(tmp_path, stage1))
    assert torch.equal(model.roi_heads.box_predictor.new_loss_counts, torch.zeros(C))


# ---- LWS end to end on the toy model -------------------------------------------------------------

def test_lws_stage2_trains_only_the_scales(tmp_path):
    torch.manual_seed(0)
    stage1 = ToyDetector()
    cfg = stage2_cfg(TRAINABLE=[f"{CLS}.scale"])
    cfg.DECOUPLED.LWS.ENABLED = True
    cfg.MODEL.WEIGHTS = save_stage1(tmp_path, stage1)
    model = ToyDetector()
    assert prepare_stage2_model(model, cfg) == [f"{CLS}.scale"]
    assert load_stage1_weights(model, cfg) is False
    assert isinstance(model.roi_heads.box_predictor.cls_score, LWSLinear)
    before = snapshot(model)
    train_few_steps(model, cfg)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]) != (name == f"{CLS}.scale"), name
    for name, value in stage1.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


def test_lws_refuses_a_reinitialised_classifier():
    cfg = stage2_cfg(TRAINABLE=[f"{CLS}.scale"], CLASSIFIER_INIT="reinit")
    cfg.DECOUPLED.LWS.ENABLED = True
    with pytest.raises(ValueError, match="cannot be 'reinit'"):
        prepare_stage2_model(ToyDetector(), cfg)


def test_frozen_predictor_parameter_must_come_from_the_checkpoint(tmp_path):
    state = ToyDetector().state_dict()
    del state["roi_heads.box_predictor.bbox_pred.bias"]
    path = str(tmp_path / "no_bbox_bias.pth")
    torch.save({"model": state}, path)
    model = ToyDetector()
    freeze_all_but(model, [CLS])
    with pytest.raises(ValueError, match=r"1 tensors missing \['roi_heads.box_predictor.bbox_pred.bias'\]"):
        load_stage1_checkpoint(model, path)


# ---- DisAlign end to end on the toy model ----------------------------------------------------------

DISALIGN_PARAMS = [f"{CLS}.logit_scale", f"{CLS}.logit_bias", f"{CLS}.confidence.weight", f"{CLS}.confidence.bias"]


def test_disalign_stage2_trains_only_its_calibration(tmp_path):
    torch.manual_seed(0)
    stage1 = ToyDetector()
    cfg = stage2_cfg(TRAINABLE=[f"{CLS}.logit_*", f"{CLS}.confidence"])
    cfg.DECOUPLED.DISALIGN.ENABLED = True
    cfg.MODEL.WEIGHTS = save_stage1(tmp_path, stage1)
    model = ToyDetector()
    assert sorted(prepare_stage2_model(model, cfg)) == sorted(DISALIGN_PARAMS)
    assert load_stage1_weights(model, cfg) is False
    assert isinstance(model.roi_heads.box_predictor.cls_score, DisAlignLinear)
    before = snapshot(model)
    train_few_steps(model, cfg)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]) != (name in DISALIGN_PARAMS), name
    for name, value in stage1.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


def test_lws_and_disalign_together_are_refused():
    cfg = stage2_cfg(TRAINABLE=[f"{CLS}.scale"])
    cfg.DECOUPLED.LWS.ENABLED = True
    cfg.DECOUPLED.DISALIGN.ENABLED = True
    with pytest.raises(ValueError, match="enable one"):
        prepare_stage2_model(ToyDetector(), cfg)

"""The stage-2 configs: each points at its stage-1 output, encodes its recipe, and its patterns
match the real model's parameters."""
import os

import pytest

from detectron2.config import get_cfg
from detectron2.engine import DefaultTrainer

from tiny_dataset import REPO
from lt_det.config import add_lt_det_config
from lt_det.engine.decoupled import prepare_stage2_model

CLS = "roi_heads.box_predictor.cls_score"
LVIS_V1_ANNOTATED_IMAGES = 99388
STAGE2 = {  # stage-2 config suffix -> stage-1 config suffix
    "_cRT": "",
    "_LWS": "",
    "_bags_stage2": "",
    "_balanced_sigmoid_stage2": "_sigmoid_ce",
}
PREFIX = {"LVISv1": "LVISv1/mask_rcnn_R_50_FPN_1x", "demo": "demo/mask_rcnn_R_18_FPN_synthetic_lt"}


def load(name):
    cfg = get_cfg()
    add_lt_det_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs", name + ".yaml"))
    return cfg


@pytest.mark.parametrize("dataset", sorted(PREFIX))
@pytest.mark.parametrize("stage2, stage1", sorted(STAGE2.items()))
def test_stage2_config_recipe(dataset, stage2, stage1):
    cfg, first = load(PREFIX[dataset] + stage2), load(PREFIX[dataset] + stage1)
    assert cfg.MODEL.WEIGHTS == os.path.join(first.OUTPUT_DIR, "model_final.pth")
    assert cfg.OUTPUT_DIR != first.OUTPUT_DIR
    d = cfg.DECOUPLED
    assert d.ENABLED and not first.DECOUPLED.ENABLED
    recipe = {
        "_cRT": ("softmax_ce", "ClassAwareSampler", [CLS], "reinit", False),
        "_LWS": ("softmax_ce", "ClassAwareSampler", [f"{CLS}.scale"], "auto", True),
        "_bags_stage2": ("bags", "TrainingSampler", [CLS], "auto", False),
        "_balanced_sigmoid_stage2": ("balanced_sigmoid", "RepeatFactorTrainingSampler", [CLS], "keep", False),
    }[stage2]
    got = (cfg.MODEL.LT_LOSS.NAME, cfg.DATALOADER.SAMPLER_TRAIN, list(d.TRAINABLE), d.CLASSIFIER_INIT, d.LWS.ENABLED)
    assert got == recipe
    if stage2 == "_balanced_sigmoid_stage2":
        assert cfg.DATALOADER.REPEAT_THRESHOLD == 0.001 and cfg.DATALOADER.REPEAT_SQRT
        assert first.MODEL.LT_LOSS.NAME == "sigmoid_ce" and not first.MODEL.LT_LOSS.SIGMOID.BACKGROUND_LOGIT


def test_lvis_v1_bags_schedule_is_12_epochs():
    cfg = load(PREFIX["LVISv1"] + "_bags_stage2")
    per_epoch = LVIS_V1_ANNOTATED_IMAGES / cfg.SOLVER.IMS_PER_BATCH
    assert cfg.SOLVER.BASE_LR == 0.01
    assert cfg.SOLVER.MAX_ITER == int(12 * per_epoch)
    assert tuple(cfg.SOLVER.STEPS) == (int(8 * per_epoch), int(11 * per_epoch))


@pytest.mark.parametrize("stage2", sorted(STAGE2))
def test_demo_stage2_patterns_match_the_real_model(quick_cfg, stage2):
    cfg = quick_cfg(config_file=os.path.join(REPO, "configs", PREFIX["demo"] + stage2 + ".yaml"))
    model = DefaultTrainer.build_model(cfg)
    trainable = prepare_stage2_model(model, cfg)
    expected = [f"{CLS}.scale"] if stage2 == "_LWS" else [f"{CLS}.weight", f"{CLS}.bias"]
    assert trainable == expected

"""What the Trainer does while it builds: one parse of the training json, and a warning for an
lt_det loss that the model's ROI heads would never compute."""
import json
import logging
import os
from collections import defaultdict

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog

from lt_det.compat import detectron2_flavour
from lt_det.data import register_lvis_format
from lt_det.engine import Trainer
from lt_det.losses.federated import FederatedLoss

CHECK_LOGGER = "lt_det.engine.config_checks"


@pytest.fixture
def fresh_train_name(tiny_dataset_root):
    """The tiny training split under a name whose metadata holds no statistics yet."""
    name, root = "trainer_build_train", tiny_dataset_root / "synthetic_lt"
    register_lvis_format(name, str(root / "synthetic_lt_train.json"), str(root))
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_building_a_trainer_parses_the_training_json_once(quick_cfg, fresh_train_name, json_parses):
    """Read by the loss (class statistics) and by the data loader (dataset dicts)."""
    cfg = quick_cfg("DATASETS.TRAIN", (fresh_train_name,), "DATASETS.TEST", "()")
    Trainer(cfg)
    train_json = os.path.realpath(MetadataCatalog.get(fresh_train_name).json_file)
    assert json_parses.count(train_json) == 1


@pytest.mark.parametrize("roi_heads, lt_heads", [("StandardROIHeads", "LTStandardROIHeads"),
                                                 ("CascadeROIHeads", "LTCascadeROIHeads")])
def test_lt_det_loss_with_detectron2_roi_heads_warns(quick_cfg, caplog, roi_heads, lt_heads):
    cfg = quick_cfg("MODEL.ROI_HEADS.NAME", roi_heads, "MODEL.LT_LOSS.NAME", "eql",
                    "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", True)  # detectron2's cascade needs it
    with caplog.at_level(logging.WARNING, logger=CHECK_LOGGER):
        Trainer.build_model(cfg)
    assert f"MODEL.LT_LOSS.NAME 'eql' will not be used: MODEL.ROI_HEADS.NAME '{roi_heads}'" in caplog.text
    assert f"Set MODEL.ROI_HEADS.NAME to {lt_heads}" in caplog.text


@pytest.mark.parametrize("roi_heads, loss", [("LTStandardROIHeads", "eql"),
                                             ("StandardROIHeads", "softmax_ce")])
def test_no_warning_when_the_loss_is_computed(quick_cfg, caplog, roi_heads, loss):
    """lt_det's heads compute any loss; detectron2's compute softmax CE, the default."""
    cfg = quick_cfg("MODEL.ROI_HEADS.NAME", roi_heads, "MODEL.LT_LOSS.NAME", loss)
    with caplog.at_level(logging.WARNING, logger=CHECK_LOGGER):
        Trainer.build_model(cfg)
    assert "will not be used" not in caplog.text


def test_detectron2_main_keys_warn_where_the_stock_predictor_ignores_them(quick_cfg, caplog):
    """detectron2 main's stock predictor implements USE_SIGMOID_CE itself; 0.6's ignores it."""
    cfg = quick_cfg("MODEL.ROI_HEADS.NAME", "StandardROIHeads", "MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE", True)
    with caplog.at_level(logging.WARNING, logger=CHECK_LOGGER):
        model = Trainer.build_model(cfg)
    ignored = not getattr(model.roi_heads.box_predictor, "use_sigmoid_ce", False)
    assert ("MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE will not be used" in caplog.text) == ignored


def _image_counts(json_file):
    """Per category (by id), the number of images with an instance of it, read off the json."""
    data = json.loads(open(json_file).read())
    images = defaultdict(set)
    for a in data["annotations"]:
        images[a["category_id"]].add(a["image_id"])
    return [len(images[c["id"]]) for c in sorted(data["categories"], key=lambda c: c["id"])]


MAIN_FED_LOSS = ("MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE", True, "MODEL.ROI_BOX_HEAD.USE_FED_LOSS", True)


@pytest.mark.skipif(detectron2_flavour() != "main", reason="detectron2 0.6's predictor has no federated loss")
def test_detectron2_main_federated_loss_builds_on_a_dataset_not_loaded_yet(quick_cfg, fresh_train_name):
    """main's stock predictor reads ``class_image_count`` while it is built, before any loader."""
    cfg = quick_cfg("DATASETS.TRAIN", (fresh_train_name,), "MODEL.ROI_HEADS.NAME", "StandardROIHeads",
                    *MAIN_FED_LOSS)
    predictor = Trainer.build_model(cfg).roi_heads.box_predictor
    counts = torch.tensor(_image_counts(MetadataCatalog.get(fresh_train_name).json_file), dtype=torch.float)
    # main's weights: image count ** FED_LOSS_FREQ_WEIGHT_POWER (0.5)
    assert predictor.use_fed_loss and torch.allclose(predictor.fed_loss_cls_weights, counts.sqrt())


def test_lt_det_predictor_takes_main_federated_keys_as_its_own_loss(quick_cfg, fresh_train_name):
    """On lt_det's heads the keys select lt_det's federated loss; the base class builds none of
    its own (on main it would, with a buffer that 0.6's checkpoints lack)."""
    cfg = quick_cfg("DATASETS.TRAIN", (fresh_train_name,), *MAIN_FED_LOSS)
    predictor = Trainer.build_model(cfg).roi_heads.box_predictor
    assert isinstance(predictor.cls_loss, FederatedLoss)
    assert not getattr(predictor, "use_fed_loss", False) and not getattr(predictor, "use_sigmoid_ce", False)
    assert "fed_loss_cls_weights" not in dict(predictor.named_buffers())

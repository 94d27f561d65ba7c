"""What the Trainer does while it builds: one parse of the training json, and a warning for an
lt_det loss that the model's ROI heads would never compute."""
import logging
import os

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from lt_det.data import register_lvis_format
from lt_det.engine import Trainer

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

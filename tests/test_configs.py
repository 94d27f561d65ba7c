"""Every YAML under configs/ merges into lt_det's config and builds its model."""
import glob
import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model

import lt_det.data  # noqa: F401  (dataset registration)
import lt_det.modeling  # noqa: F401  (ROI heads registration)
from lt_det.config import add_lt_det_config
from lt_det.data import get_class_stats
from lt_det.calibration import get_calibration_class
from lt_det.calibration.fractal_dimension import save_fractal_dimensions
from lt_det.losses import get_loss_class, resolve_loss_name
from lvis_stats import set_coco_lt_stand_in_statistics, set_lvis_statistics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# configs/benchmark/methods.yaml is the benchmark's method list, not a detectron2 config
# (tests/benchmark/ checks it).
CONFIGS = sorted(p for p in glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True)
                 if os.path.basename(p) != "methods.yaml")
# The benchmark's generated sets are large; their configs build on the tests' tiny set instead.
TINY_STAND_IN = {("synthetic_lt_bench_train",), ("synthetic_pretrain_train",)}


@pytest.fixture(scope="module", autouse=True)
def lvis_statistics():
    set_lvis_statistics()
    set_coco_lt_stand_in_statistics()


def test_there_are_configs():
    assert any(c.endswith("Base-LVIS-MaskRCNN-FPN.yaml") for c in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, os.path.join(REPO, "configs")))
def test_config_merges_and_builds(path, tiny_dataset_root, tmp_path):
    cfg = get_cfg()
    add_lt_det_config(cfg)
    cfg.merge_from_file(path)
    cfg.MODEL.DEVICE = "cpu"
    if cfg.DATASETS.TRAIN in TINY_STAND_IN:
        cfg.DATASETS.TRAIN = ("synthetic_lt_train",)
    if cfg.DATASETS.TRAIN == ("synthetic_lt_train",):  # the tests' tiny version of the set
        cfg.MODEL.ROI_HEADS.NUM_CLASSES = get_class_stats("synthetic_lt_train").num_classes
    fracal = cfg.TEST.CALIBRATION.FRACAL
    if cfg.TEST.CALIBRATION.METHOD == "fracal" and fracal.DIMENSIONS_FILE and not os.path.exists(fracal.DIMENSIONS_FILE):
        # made from the training json by tools/fractal_dimension.py; LVIS's json is not here
        ids = range(1, cfg.MODEL.ROI_HEADS.NUM_CLASSES + 1)
        fracal.DIMENSIONS_FILE = str(tmp_path / "fractal_dimension.json")
        save_fractal_dimensions(fracal.DIMENSIONS_FILE, [1.5] * len(ids), list(ids), source="test stand-in")
    cfg.freeze()
    if not all(name in DatasetCatalog.list() for name in cfg.DATASETS.TRAIN):
        pytest.fail(f"{path} trains on an unregistered dataset: {cfg.DATASETS.TRAIN}")
    model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert all(p.device == torch.device("cpu") for p in model.parameters())
    predictor = model.roi_heads.box_predictor
    predictors = list(predictor) if isinstance(predictor, torch.nn.ModuleList) else [predictor]  # a cascade: per stage
    name = resolve_loss_name(cfg)
    for predictor in predictors:
        assert isinstance(predictor.cls_loss, get_loss_class(name)), f"{path} does not train with '{name}'"
        assert predictor.cls_score.out_features == expected_logits(cfg, name), path
        method = cfg.TEST.CALIBRATION.METHOD
        if method == "none" or get_calibration_class(method).is_identity(cfg.TEST.CALIBRATION[method.upper()]):
            assert predictor.calibration is None, path  # NorCal's LVIS leaf: γ is given on the command line
        else:
            assert isinstance(predictor.calibration, get_calibration_class(method)), f"{path} does not calibrate"


def expected_logits(cfg, name):
    """Each loss's classifier size as its paper lays it out, for K classes."""
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    if name in ("sigmoid_ce", "focal", "class_balanced_focal"):
        return num_classes + int(cfg.MODEL.LT_LOSS.SIGMOID.BACKGROUND_LOGIT)
    if name in ("balanced_sigmoid", "eql", "droploss"):
        return num_classes  # no background logit
    if name == "federated":
        return num_classes + int(cfg.MODEL.LT_LOSS.ACTIVATION == "sigmoid")  # GOL's Gumbel layout has none
    if name == "seesaw":
        return num_classes + 2  # two objectness logits
    if name == "bags":  # K classes, background, and one "others" slot per group (G0 included)
        groups = len(cfg.MODEL.LT_LOSS.BAGS.BIN_EDGES) + 1
        return num_classes + 1 + groups + 1
    return num_classes + 1  # the softmax layout (and Gumbel CE's K + 1 binary classifiers)


def test_gol_config_has_its_recipe(tiny_dataset_root):
    """GOL's leaf: DropLoss with the Gumbel activation, cosine mask predictor (t = 20), NMS 0.3."""
    from lt_det.modeling.cosine import CosineConv2d

    cfg = get_cfg()
    add_lt_det_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs/demo/mask_rcnn_R_18_FPN_synthetic_lt_gol.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = get_class_stats("synthetic_lt_train").num_classes
    model = build_model(cfg)
    predictor = model.roi_heads.mask_head.predictor
    assert isinstance(predictor, CosineConv2d) and predictor.temperature == 20.0
    assert (cfg.MODEL.LT_LOSS.NAME, cfg.MODEL.LT_LOSS.ACTIVATION) == ("droploss", "gumbel")
    assert model.roi_heads.box_predictor.test_nms_thresh == 0.3

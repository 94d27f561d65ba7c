"""Config keys, detectron2 main's keys, and the errors a wrong config gets."""
import pytest

from detectron2.data import DatasetCatalog, MetadataCatalog

from lt_det.losses import build_loss, kernels, resolve_loss_name
from lt_det.losses.federated import FederatedLoss
from lt_det.losses.sigmoid_ce import SigmoidCE

from loss_stats_dataset import NUM_CLASSES, loss_cfg


def test_detectron2_main_keys_keep_their_meaning():
    cfg = loss_cfg("softmax_ce")
    assert cfg.MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES == 50
    assert cfg.MODEL.ROI_BOX_HEAD.FED_LOSS_FREQ_WEIGHT_POWER == 0.5
    cfg.MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE = True
    assert isinstance(build_loss(cfg), SigmoidCE)
    cfg.MODEL.ROI_BOX_HEAD.USE_FED_LOSS = True
    cfg.MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES = 7
    loss = build_loss(cfg)
    assert isinstance(loss, FederatedLoss) and loss.num_sampled == 7 and loss.num_logits(NUM_CLASSES) == NUM_CLASSES + 1


def test_fed_loss_without_sigmoid_ce_is_refused():
    cfg = loss_cfg("softmax_ce")
    cfg.MODEL.ROI_BOX_HEAD.USE_FED_LOSS = True
    with pytest.raises(ValueError, match="USE_SIGMOID_CE"):
        resolve_loss_name(cfg)


def test_conflicting_names_are_refused():
    cfg = loss_cfg("eql")
    cfg.MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE = True
    with pytest.raises(ValueError, match="keep one of the two"):
        resolve_loss_name(cfg)


def test_unknown_loss_lists_the_valid_names():
    with pytest.raises(KeyError, match="Registered losses: .*eql.*seesaw"):
        build_loss(loss_cfg("eqlv3"))


def test_loss_needing_statistics_on_a_dataset_without_them():
    name = "lt_det_test_no_stats"  # registered, not LVIS format: no statistics
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, list)
        MetadataCatalog.get(name).set(thing_classes=["a"] * NUM_CLASSES)
    with pytest.raises(KeyError, match="Loss 'eql' .* needs per-class training statistics.*register_lvis_format"):
        build_loss(loss_cfg("eql", dataset=name))
    assert build_loss(loss_cfg("softmax_ce", dataset=name)).num_classes == NUM_CLASSES  # needs none


def test_num_classes_differing_from_the_dataset():
    with pytest.raises(ValueError, match=f"set MODEL.ROI_HEADS.NUM_CLASSES {NUM_CLASSES}"):
        build_loss(loss_cfg("balanced_softmax", num_classes=NUM_CLASSES + 1))


def test_every_config_key_is_commented():
    import inspect

    from lt_det.losses import config

    lines = inspect.getsource(config.add_loss_config).splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if (stripped.startswith("_C.") or stripped.startswith("head.")) and "= CN()" not in stripped:
            assert "#" in stripped or lines[i - 1].strip().startswith("#"), stripped


def test_compile_key_switches_the_fused_kernels(monkeypatch):
    monkeypatch.setattr(kernels, "_compile", True)
    cfg = loss_cfg("eql")
    assert cfg.MODEL.LT_LOSS.COMPILE is True
    cfg.MODEL.LT_LOSS.COMPILE = False
    build_loss(cfg)
    assert not kernels.compile_enabled()

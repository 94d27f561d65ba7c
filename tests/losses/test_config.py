"""Config keys, detectron2 main's keys, and the errors a wrong config gets."""
import pytest
import torch

from lt_det.losses import build_loss, get_loss_class, list_losses, resolve_loss_name
from lt_det.losses.federated import FederatedLoss
from lt_det.losses.sigmoid_ce import SigmoidCE

from loss_stats_dataset import NUM_CLASSES, loss_cfg, no_stats_dataset


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
    name = no_stats_dataset()
    with pytest.raises(KeyError, match="Loss 'eql' .* needs per-class training statistics.*register_lvis_format"):
        build_loss(loss_cfg("eql", dataset=name))
    assert build_loss(loss_cfg("softmax_ce", dataset=name)).num_classes == NUM_CLASSES  # needs none


def test_num_classes_differing_from_the_dataset():
    with pytest.raises(ValueError, match=f"set MODEL.ROI_HEADS.NUM_CLASSES {NUM_CLASSES}"):
        build_loss(loss_cfg("balanced_softmax", num_classes=NUM_CLASSES + 1))


def config_sites():
    """Every function that declares config keys: the config function's parts and each loss's."""
    from lt_det.data.sampling_config import add_sampling_config
    from lt_det.engine.decoupled_config import add_decoupled_config
    from lt_det.evaluation.config import add_evaluation_config
    from lt_det.losses.config import add_loss_config
    from lt_det.modeling.mask_head import add_mask_head_config

    sites = [add_loss_config, add_sampling_config, add_decoupled_config, add_evaluation_config, add_mask_head_config]
    return sites + [get_loss_class(name).add_config for name in list_losses()]


def test_every_config_key_is_commented():
    import inspect
    import re

    assignment = re.compile(r"^[\w.]*\.[A-Z][A-Z0-9_]* = ")  # cfg.MODEL.X.KEY = ..., _C.KEY = ..., head.KEY = ...
    checked = 0
    for site in config_sites():
        lines = inspect.getsource(site).splitlines()
        for i, line in enumerate(lines):
            stripped = line.strip()
            if assignment.match(stripped) and "= CN()" not in stripped:
                checked += 1
                assert "#" in stripped or lines[i - 1].strip().startswith("#"), f"{site.__qualname__}: {stripped}"
    assert checked >= 35  # the pattern found the keys (37 when written)


def test_implementation_key_reaches_the_loss():
    cfg = loss_cfg("eql")
    assert cfg.MODEL.LT_LOSS.IMPLEMENTATION == "auto"
    loss = build_loss(cfg)
    # auto: fused on CPU, where it is measured; the reference on CUDA until validated there.
    assert loss.uses_fused(torch.device("cpu")) and not loss.uses_fused(torch.device("cuda"))
    cfg.MODEL.LT_LOSS.IMPLEMENTATION = "reference"
    assert not build_loss(cfg).uses_fused(torch.device("cpu"))
    cfg.MODEL.LT_LOSS.IMPLEMENTATION = "fused"
    assert build_loss(cfg).uses_fused(torch.device("cuda"))
    cfg.MODEL.LT_LOSS.IMPLEMENTATION = "fast"
    with pytest.raises(ValueError, match="auto.*fused.*reference"):
        build_loss(cfg)


def test_the_reference_runs_when_the_fused_path_is_off(monkeypatch):
    loss = build_loss(loss_cfg("eql"))
    loss.implementation = "reference"
    monkeypatch.setattr(type(loss), "fused_loss", lambda *args, **kwargs: pytest.fail("fused path ran"))
    value = loss(torch.randn(5, NUM_CLASSES), torch.tensor([0, 1, 2, 3, NUM_CLASSES]))
    assert torch.isfinite(value)

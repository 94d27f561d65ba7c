"""tools/tau_norm.py: applying τ to a checkpoint, the sweep's bookkeeping, and its bad inputs."""
import importlib.util
import os

import pytest
import torch
from torch import nn

from detectron2.config import get_cfg

from lt_det.config import add_lt_det_config
from lt_det.modeling.tau_norm import CLASSIFIER_WEIGHT, tau_normalize

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
C = 3


def load_tool():
    spec = importlib.util.spec_from_file_location("tau_norm_tool", os.path.join(REPO, "tools", "tau_norm.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = load_tool()


def toy_model():
    torch.manual_seed(0)
    model = nn.Module()
    model.roi_heads = nn.Module()
    model.roi_heads.box_predictor = nn.Module()
    model.roi_heads.box_predictor.cls_score = nn.Linear(6, C + 1)
    return model


def test_apply_to_checkpoint(tmp_path):
    model = toy_model()
    src, dst = str(tmp_path / "model.pth"), str(tmp_path / "out" / "tau1.pth")
    torch.save({"model": model.state_dict(), "iteration": 5}, src)
    tool.apply_to_checkpoint(src, dst, 1.0, list(range(C)))
    out = torch.load(dst)
    assert out["tau"] == 1.0
    torch.testing.assert_close(out["model"][CLASSIFIER_WEIGHT][:C].norm(dim=1), torch.ones(C))
    assert torch.equal(out["model"][CLASSIFIER_WEIGHT][C:], model.state_dict()[CLASSIFIER_WEIGHT][C:])
    assert torch.equal(out["model"]["roi_heads.box_predictor.cls_score.bias"], model.roi_heads.box_predictor.cls_score.bias)
    with pytest.raises(FileNotFoundError):
        tool.apply_to_checkpoint(str(tmp_path / "missing.pth"), dst, 1.0, list(range(C)))


def test_sweep_evaluates_each_tau_and_keeps_the_best():
    model = toy_model()
    original = model.state_dict()[CLASSIFIER_WEIGHT].clone()
    seen = {}

    def evaluate(m, tau):
        seen[tau] = m.state_dict()[CLASSIFIER_WEIGHT].clone()
        return {"bbox": {"AP": {0.0: 10.0, 0.5: 30.0, 1.0: 20.0}[tau]}}

    best, scores = tool.tau_sweep(model, [0.0, 0.5, 1.0], list(range(C)), evaluate, "bbox/AP")
    assert best == 0.5 and scores == [(0.0, 10.0), (0.5, 30.0), (1.0, 20.0)]
    for tau, weight in seen.items():
        assert torch.equal(weight, tau_normalize(original, tau, list(range(C))))
    assert torch.equal(model.state_dict()[CLASSIFIER_WEIGHT], tau_normalize(original, 0.5, list(range(C))))
    with pytest.raises(KeyError, match="'segm/AP' not in the results"):
        tool.tau_sweep(model, [1.0], list(range(C)), evaluate, "segm/AP")


def test_sweep_refuses_the_evaluation_split_before_building_the_model():
    cfg = get_cfg()
    add_lt_det_config(cfg)
    cfg.DATASETS.TRAIN = ("lvis_v1_train",)
    cfg.DATASETS.TEST = ("lvis_v1_val",)
    cfg.MODEL.META_ARCHITECTURE = "NoSuchArchitecture"  # reached only if the split check passed
    sweep_args = tool.parser().parse_args(["--config-file", "c.yaml", "--weights", "w.pth", "sweep"])
    with pytest.raises(ValueError, match="Name the held-out split"):
        tool.run_sweep(cfg.clone(), sweep_args)
    sweep_args.tune_dataset = "lvis_v1_val"
    with pytest.raises(ValueError, match="Refusing to tune on 'lvis_v1_val'"):
        tool.run_sweep(cfg.clone(), sweep_args)
    sweep_args.tune_dataset = "my_heldout_split"
    with pytest.raises(KeyError, match="NoSuchArchitecture"):
        tool.run_sweep(cfg.clone(), sweep_args)

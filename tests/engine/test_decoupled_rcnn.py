"""Stage 2 on the real demo Mask R-CNN (R18-FPN with BatchNorm in the backbone), a few CPU steps."""
import pytest
import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import DefaultTrainer, SimpleTrainer

from lt_det.data import LTDatasetMapper
from lt_det.data.build import build_lt_train_loader
from lt_det.engine.decoupled import CLASSIFIER, load_stage1_weights, prepare_stage2_model


def stage1_checkpoint(tmp_path, cfg):
    """A 'stage-1 model': the demo model at its seeded initialisation, saved as the trainer would."""
    torch.manual_seed(0)
    model = DefaultTrainer.build_model(cfg)
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("stage1")
    return str(tmp_path / "stage1.pth"), {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("trainable", [[CLASSIFIER], ["roi_heads.box_head"]])
def test_stage2_changes_exactly_the_trainable_tensors(tmp_path, quick_cfg, trainable):
    cfg = quick_cfg("DATALOADER.SAMPLER_TRAIN", "ClassAwareSampler")
    path, stage1 = stage1_checkpoint(tmp_path, cfg)
    cfg.MODEL.WEIGHTS = path
    cfg.DECOUPLED.ENABLED = True
    cfg.DECOUPLED.TRAINABLE = trainable
    cfg.DECOUPLED.CLASSIFIER_INIT = "keep"

    torch.manual_seed(1)
    model = DefaultTrainer.build_model(cfg)
    names = prepare_stage2_model(model, cfg)
    assert load_stage1_weights(model, cfg) is False
    assert all(torch.equal(v, stage1[k]) for k, v in model.state_dict().items())
    optimizer = DefaultTrainer.build_optimizer(cfg, model)
    loader = build_lt_train_loader(cfg, mapper=LTDatasetMapper(cfg, is_train=True))
    SimpleTrainer(model, loader, optimizer).train(0, 2)

    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {
        id(p) for n, p in model.named_parameters() if n in names
    }
    for name, value in model.state_dict().items():
        if name in names:
            assert not torch.equal(value, stage1[name]), f"{name} did not train"
        else:  # frozen parameters, BatchNorm running statistics and every other buffer
            assert torch.equal(value, stage1[name]), f"{name} changed"

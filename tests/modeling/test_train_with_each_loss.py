"""A few training iterations of the demo model on the tiny synthetic set with every built-in loss.

detectron2's SimpleTrainer on lt_det's data loader and model, without checkpointing or evaluation.
"""
import pytest
import torch

from detectron2.data import build_detection_train_loader
from detectron2.engine import SimpleTrainer
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer

import lt_det.modeling  # noqa: F401  (registers the LT ROI heads)
from lt_det.data.image_labels import ImageLabelDatasetMapper
from lt_det.engine.trainer import Trainer
from lt_det.losses import get_loss_class, list_losses

BUILT_IN = [name for name in list_losses() if not name.startswith("test_")]
ITERS = 2


def train(cfg, data_loader):
    model = build_model(cfg)
    trainer = SimpleTrainer(model, data_loader, build_optimizer(cfg, model))
    trainer.train(0, ITERS)
    losses = trainer.storage.history("loss_cls").values()
    assert len(losses) == ITERS and all(torch.isfinite(torch.tensor(v)) for v, _ in losses)
    return model


def quick(quick_cfg, name, *opts):
    return quick_cfg("MODEL.ROI_HEADS.NAME", "LTStandardROIHeads", "MODEL.LT_LOSS.NAME", name,
                     "MODEL.LT_LOSS.TAIL_THRESHOLD", 0.05, "MODEL.MASK_ON", False, *opts)


@pytest.mark.parametrize("name", BUILT_IN)
def test_few_iterations(quick_cfg, name):
    torch.manual_seed(0)
    cfg = quick(quick_cfg, name)
    model = train(cfg, Trainer.build_train_loader(cfg))
    assert isinstance(model.roi_heads.box_predictor.cls_loss, get_loss_class(name))


def test_eql_with_image_labels(quick_cfg):
    # Training with EQL's image-label option takes the mapper that carries the labels.
    torch.manual_seed(0)
    cfg = quick(quick_cfg, "eql", "MODEL.LT_LOSS.EQL.USE_IMAGE_LABELS", True)
    train(cfg, build_detection_train_loader(cfg, mapper=ImageLabelDatasetMapper(cfg, is_train=True)))

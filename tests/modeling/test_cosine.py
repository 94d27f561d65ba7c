"""Cosine (normalised) classifier: the formula by hand, and the predictor building it from config."""
import math

import torch

from lt_det.config import add_lt_det_config
from lt_det.modeling import LTFastRCNNOutputLayers
from lt_det.modeling.cosine import CosineLinear

from loss_stats_dataset import NUM_CLASSES, register


def test_cosine_linear_by_hand():
    layer = CosineLinear(2, 3, temperature=20.0)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))
        layer.bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
    x = torch.tensor([[3.0, 4.0]])  # direction (0.6, 0.8)
    expected = torch.tensor([[20 * 0.6, 20 * 0.8, 20 * (0.6 + 0.8) / math.sqrt(2) + 1.0]])
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-4)
    torch.testing.assert_close(layer(7 * x), layer(x))  # invariant to the feature scale


def test_predictor_uses_the_cosine_classifier_from_config():
    from detectron2.config import get_cfg
    from detectron2.layers import ShapeSpec

    cfg = add_lt_det_config(get_cfg())
    cfg.DATASETS.TRAIN = (register(),)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = NUM_CLASSES
    cfg.MODEL.LT_LOSS.NAME = "seesaw"
    cfg.MODEL.LT_LOSS.COSINE_TEMPERATURE = 20.0
    predictor = LTFastRCNNOutputLayers(cfg, ShapeSpec(channels=16))
    assert isinstance(predictor.cls_score, CosineLinear) and predictor.cls_score.temperature == 20.0
    assert predictor.cls_score.out_features == NUM_CLASSES + 2
    scores, _ = predictor(torch.randn(5, 16))
    assert scores.abs().max() <= 20.0 + predictor.cls_score.bias.abs().max() + 1e-4
    cfg.MODEL.LT_LOSS.COSINE_TEMPERATURE = 0.0
    assert type(LTFastRCNNOutputLayers(cfg, ShapeSpec(channels=16)).cls_score) is torch.nn.Linear

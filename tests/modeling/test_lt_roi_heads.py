"""The ROI heads swap in LTFastRCNNOutputLayers; image-level labels reach the proposals."""
import numpy as np
import pytest
import torch

import lt_det  # noqa: F401
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import build_roi_heads
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from lt_det.data.image_labels import ImageLabelDatasetMapper
from lt_det.config import add_lt_det_config
from lt_det.modeling import LTFastRCNNOutputLayers

from loss_stats_dataset import NUM_CLASSES, register

FEATURES = {f"p{i}": ShapeSpec(channels=8, stride=2**i) for i in range(2, 6)}


def roi_cfg(name, loss="eql"):
    cfg = get_cfg()
    add_lt_det_config(cfg)
    cfg.DATASETS.TRAIN = (register(),)
    cfg.MODEL.ROI_HEADS.NAME = name
    cfg.MODEL.ROI_HEADS.IN_FEATURES = list(FEATURES)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = NUM_CLASSES
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 1
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 16
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 4
    cfg.MODEL.LT_LOSS.NAME = loss
    return cfg


def test_standard_roi_heads_use_the_lt_predictor():
    heads = build_roi_heads(roi_cfg("LTStandardROIHeads", "seesaw"), FEATURES)
    assert isinstance(heads.box_predictor, LTFastRCNNOutputLayers)
    assert heads.box_predictor.cls_score.out_features == NUM_CLASSES + 2


def test_cascade_roi_heads_use_the_lt_predictor_in_every_stage():
    cfg = roi_cfg("LTCascadeROIHeads")
    cfg.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = True
    heads = build_roi_heads(cfg, FEATURES)
    weights = cfg.MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS
    assert len(heads.box_predictor) == 3
    for predictor, stage_weights in zip(heads.box_predictor, weights):
        assert isinstance(predictor, LTFastRCNNOutputLayers)
        assert predictor.cls_score.out_features == NUM_CLASSES  # EQL: no background logit
        assert predictor.box2box_transform.weights == tuple(stage_weights)


def test_image_labels_travel_from_dataset_dict_to_proposals(tmp_path):
    import cv2

    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((40, 50, 3), dtype=np.uint8))
    cfg = roi_cfg("LTStandardROIHeads")
    cfg.INPUT.MIN_SIZE_TRAIN = (40,)
    cfg.INPUT.RANDOM_FLIP = "none"
    mapper = ImageLabelDatasetMapper(cfg, is_train=True)
    record = {
        "file_name": str(image), "height": 40, "width": 50, "image_id": 1,
        "annotations": [{"bbox": [5, 5, 20, 20], "bbox_mode": 0, "category_id": 3}],
        "neg_category_ids": [1, 5], "not_exhaustive_category_ids": [],
    }
    instances = mapper(record)["instances"]
    expected = torch.tensor([False, True, False, True, False, True])  # annotated 3, negatives 1, 5
    assert instances.gt_image_labels.shape == (1, NUM_CLASSES)
    assert torch.equal(instances.gt_image_labels[0], expected)

    heads = build_roi_heads(cfg, FEATURES)
    proposals = Instances((40, 50), proposal_boxes=Boxes(torch.tensor([[5.0, 5, 25, 25], [30, 30, 45, 38]])))
    proposals.objectness_logits = torch.zeros(2)
    with EventStorage():
        labelled = heads.label_and_sample_proposals([proposals], [instances])[0]
    assert labelled.gt_image_labels.shape == (len(labelled), NUM_CLASSES)
    assert (labelled.gt_image_labels == expected).all()


def test_cascade_stages_carry_image_labels():
    cfg = roi_cfg("LTCascadeROIHeads")
    cfg.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = True
    heads = build_roi_heads(cfg, FEATURES)
    targets = Instances((40, 50), gt_boxes=Boxes(torch.tensor([[5.0, 5, 25, 25]])), gt_classes=torch.tensor([3]))
    targets.gt_image_labels = torch.tensor([[False, True, False, True, False, True]])
    proposals = Instances((40, 50), proposal_boxes=Boxes(torch.tensor([[5.0, 5, 25, 25], [30, 30, 45, 38]])))
    with EventStorage():
        labelled = heads._match_and_label_boxes([proposals], 1, [targets])[0]
    assert labelled.gt_classes.tolist() == [3, NUM_CLASSES]
    assert (labelled.gt_image_labels == targets.gt_image_labels[0]).all() and len(labelled.gt_image_labels) == 2


def test_mapper_without_negative_labels_says_what_is_missing(tmp_path):
    mapper = ImageLabelDatasetMapper(roi_cfg("LTStandardROIHeads"), is_train=True)
    with pytest.raises(KeyError, match="neg_category_ids"):
        mapper({"file_name": "x.jpg", "annotations": []})

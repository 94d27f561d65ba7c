"""Mask R-CNN R50-FPN for LVIS v1 with lt_det's box predictor, in LazyConfig form.

detectron2's LVIS recipe (the YACS configs/Base-LVIS-MaskRCNN-FPN.yaml, and detectron2's own
configs/common/models/mask_rcnn_fpn.py with 1203 classes): ImageNet MSRA R-50 layout (FrozenBN,
stride in the 1x1 conv), FPN p2-p6, StandardRPNHead, 2fc box head, 4conv mask head. lt_det's parts:

* ``roi_heads.box_predictor``: :class:`LTFastRCNNOutputLayers`, its classification loss
  ``cls_loss`` from lt_det's registry (``cls_loss.name``: one line picks the method);
* ``roi_heads.mask_head``: ``ClassSelectMaskRCNNConvUpsampleHead`` (bounded inference memory on
  1203 classes, the same weights as detectron2's head).

The training datasets' names are read from ``dataloader.train.dataset.names`` (the class
statistics the loss needs); a config that imports this model must define that dataloader.
"""
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.backbone import FPN, BasicStem, ResNet
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.meta_arch import GeneralizedRCNN
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.proposal_generator import RPN, StandardRPNHead
from detectron2.modeling.roi_heads import FastRCNNConvFCHead

from lt_det.lazy import calibration, class_frequency, lt_loss
from lt_det.modeling.fast_rcnn import LTFastRCNNOutputLayers
from lt_det.modeling.mask_head import ClassSelectMaskRCNNConvUpsampleHead
from lt_det.modeling.roi_heads import LTStandardROIHeads

TRAIN_DATASETS = "${dataloader.train.dataset.names}"

model = L(GeneralizedRCNN)(
    backbone=L(FPN)(
        bottom_up=L(ResNet)(
            stem=L(BasicStem)(in_channels=3, out_channels=64, norm="FrozenBN"),
            stages=L(ResNet.make_default_stages)(depth=50, stride_in_1x1=True, norm="FrozenBN"),
            out_features=["res2", "res3", "res4", "res5"],
            freeze_at=2,  # MODEL.BACKBONE.FREEZE_AT: stem and res2 frozen (pretrained weights)
        ),
        in_features="${.bottom_up.out_features}",
        out_channels=256,
        top_block=L(LastLevelMaxPool)(),
    ),
    proposal_generator=L(RPN)(
        in_features=["p2", "p3", "p4", "p5", "p6"],
        head=L(StandardRPNHead)(in_channels=256, num_anchors=3),
        anchor_generator=L(DefaultAnchorGenerator)(
            sizes=[[32], [64], [128], [256], [512]],  # one size per FPN level
            aspect_ratios=[0.5, 1.0, 2.0],
            strides=[4, 8, 16, 32, 64],
            offset=0.0,
        ),
        anchor_matcher=L(Matcher)(thresholds=[0.3, 0.7], labels=[0, -1, 1], allow_low_quality_matches=True),
        box2box_transform=L(Box2BoxTransform)(weights=[1.0, 1.0, 1.0, 1.0]),
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_topk=(2000, 1000),  # per FPN level, (train, test)
        post_nms_topk=(1000, 1000),
        nms_thresh=0.7,
    ),
    roi_heads=L(LTStandardROIHeads)(
        num_classes=1203,  # LVIS v1
        batch_size_per_image=512,
        positive_fraction=0.25,
        proposal_matcher=L(Matcher)(thresholds=[0.5], labels=[0, 1], allow_low_quality_matches=False),
        box_in_features=["p2", "p3", "p4", "p5"],
        box_pooler=L(ROIPooler)(
            output_size=7, scales=(1.0 / 4, 1.0 / 8, 1.0 / 16, 1.0 / 32), sampling_ratio=0, pooler_type="ROIAlignV2",
        ),
        box_head=L(FastRCNNConvFCHead)(
            input_shape=ShapeSpec(channels=256, height=7, width=7), conv_dims=[], fc_dims=[1024, 1024],
        ),
        box_predictor=L(LTFastRCNNOutputLayers)(
            input_shape=ShapeSpec(channels=1024),
            box2box_transform=L(Box2BoxTransform)(weights=(10, 10, 5, 5)),
            num_classes="${..num_classes}",
            test_score_thresh=0.0001,  # LVIS protocol: keep low-scoring detections
            test_topk_per_image=300,  # LVIS protocol: up to 300 detections per image
            # The classification loss: any name of lt_det.losses.list_losses(); its arguments
            # default to the YACS MODEL.LT_LOSS.* defaults (each loss's module documents them) and
            # are overridden by keyword (e.g. cls_loss.lambda_=0.00177 for "eql").
            cls_loss=L(lt_loss)(name="softmax_ce", num_classes="${..num_classes}", train_datasets=TRAIN_DATASETS),
            class_frequency=L(class_frequency)(train_datasets=TRAIN_DATASETS),  # per-group accuracy logs
            # Post-hoc calibration of the test scores (the YACS TEST.CALIBRATION): "none", or any
            # name of lt_det.calibration.list_calibrations(), its keys by their YACS names in
            # lower case (e.g. calibration.method="norcal", calibration.gamma=0.6).
            calibration=L(calibration)(method="none", train_datasets=TRAIN_DATASETS),
        ),
        mask_in_features=["p2", "p3", "p4", "p5"],
        mask_pooler=L(ROIPooler)(
            output_size=14, scales=(1.0 / 4, 1.0 / 8, 1.0 / 16, 1.0 / 32), sampling_ratio=0, pooler_type="ROIAlignV2",
        ),
        mask_head=L(ClassSelectMaskRCNNConvUpsampleHead)(
            input_shape=ShapeSpec(channels=256, width=14, height=14),
            num_classes="${..num_classes}",
            conv_dims=[256, 256, 256, 256, 256],  # 4 convs + the deconv's width
        ),
    ),
    # MSRA R-50: BGR in [0, 255]; its std is folded into conv1, hence 1.
    pixel_mean=[103.530, 116.280, 123.675],
    pixel_std=[1.0, 1.0, 1.0],
    input_format="BGR",
)

"""The demo as a LazyConfig: the same model, data and schedule as the YACS
configs/demo/mask_rcnn_R_18_FPN_synthetic_lt.yaml (a small Mask R-CNN, R18-FPN with 64 channels,
trained from scratch on the synthetic long-tailed set on CPU; softmax CE, no resampling):

    python datasets/prepare_synthetic_lt.py
    python train_net.py --config-file configs/lazy/demo_synthetic_lt.py
    python train_net.py --config-file configs/lazy/demo_synthetic_lt.py \
        model.roi_heads.box_predictor.cls_loss.name=eqlv2 dataloader.train.sampler=RepeatFactorTrainingSampler
"""
import torch

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import ResNet

from lt_det.lazy import gradient_clipped

from .common.lvis_v1_data import dataloader
from .common.mask_rcnn_fpn_lt import model
from .common.schedule import lr_multiplier, optimizer, train

model.roi_heads.box_predictor.cls_loss.name = "softmax_ce"  # the method: any lt_det loss name

# R18 from scratch: BatchNorm (FrozenBN diverges from a random init), nothing frozen, 64 channels
model.backbone.bottom_up.stem.norm = "BN"
# R18's BasicBlocks have 64 res2 channels and no stride_in_1x1 option
model.backbone.bottom_up.stages = L(ResNet.make_default_stages)(depth=18, norm="BN")
model.backbone.bottom_up.freeze_at = 0
model.backbone.out_channels = 64
model.proposal_generator.head.in_channels = 64
model.proposal_generator.anchor_generator.sizes = [[16], [32], [64], [128], [256]]  # objects are 18-44 px
model.proposal_generator.post_nms_topk = (500, 500)
model.roi_heads.num_classes = 40
model.roi_heads.batch_size_per_image = 128
model.roi_heads.box_head.input_shape = ShapeSpec(channels=64, height=7, width=7)
model.roi_heads.box_head.fc_dims = [256, 256]
model.roi_heads.box_predictor.input_shape = ShapeSpec(channels=256)
model.roi_heads.box_predictor.test_topk_per_image = 300
model.roi_heads.mask_head.input_shape = ShapeSpec(channels=64, height=14, width=14)
model.roi_heads.mask_head.conv_dims = [64, 64, 64]  # 2 convs + the deconv's width
# the YACS demo's normalisation (unit std for scratch training)
model.pixel_mean = [123.675, 116.28, 103.53]
model.pixel_std = [58.395, 57.12, 57.375]

dataloader.train.dataset.names = "synthetic_lt_train"
dataloader.train.sampler = "TrainingSampler"
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(128,), sample_style="choice", max_size=128),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.total_batch_size = 8
dataloader.train.num_workers = 1
dataloader.train.exact_resume = False  # as the YACS demo: detectron2's loader (the LVIS data config turns it on)
dataloader.test.dataset.names = "synthetic_lt_val"
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=128, max_size=128)]
dataloader.test.num_workers = 1

train.init_checkpoint = ""  # from scratch: no pretrained weights can be downloaded here
train.max_iter = 800
train.checkpointer.period = 100
train.seed = 42
train.output_dir = "output/lazy/demo"
lr_multiplier.scheduler.milestones = [600, 720]  # 75% and 90%
lr_multiplier.warmup_length = 100 / 800
# from scratch on this data, training diverged without clipping (measured with the YACS demo)
optimizer._target_ = gradient_clipped(torch.optim.SGD, clip_value=1.0, clip_type="norm")

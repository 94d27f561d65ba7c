"""Mask R-CNN R50-FPN, 100 epochs of large-scale jitter from scratch, on LVIS v1: detectron2
main's configs/new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py recipe (SyncBN everywhere, 2-conv
RPN head, 4conv1fc box head, 1024 x 1024 LSJ crops, 64 images per step, SGD lr 0.1, weight decay
4e-5, mixed precision) with LVIS v1 data, repeat factor sampling (t = 0.001) and lt_det's loss:

    python train_net.py --config-file configs/lazy/mask_rcnn_R_50_FPN_100ep_LSJ_lvis_v1.py --num-gpus 8 \
        model.roi_heads.box_predictor.cls_loss.name=federated

Schedule: 100 epochs of LVIS v1 train (100,170 images) at 64 images per step = 156,250
iterations (the count of detectron2's ViTDet LVIS configs), LR x0.1 at the same fractions of
training as the COCO recipe (88.9% and 96.3%).
"""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.layers.batch_norm import NaiveSyncBatchNorm

from .common.lvis_v1_data import dataloader
from .common.mask_rcnn_fpn_lt import model
from .common.schedule import lr_multiplier, optimizer, train

model.roi_heads.box_predictor.cls_loss.name = "softmax_ce"  # the method: any lt_det loss name

# from scratch, every norm synchronised across GPUs
train.init_checkpoint = ""
train.amp.enabled = True
train.ddp.fp16_compression = True
model.backbone.bottom_up.freeze_at = 0
model.backbone.bottom_up.stem.norm = "SyncBN"
model.backbone.bottom_up.stages.norm = "SyncBN"
model.backbone.norm = "SyncBN"
# NaiveSyncBatchNorm: the heads may see empty batches, which torch's SyncBatchNorm rejects
model.roi_heads.box_head.conv_norm = lambda c: NaiveSyncBatchNorm(c, stats_mode="N")
model.roi_heads.mask_head.conv_norm = lambda c: NaiveSyncBatchNorm(c, stats_mode="N")
model.proposal_generator.head.conv_dims = [-1, -1]  # 2 convs in the RPN head
model.roi_heads.box_head.conv_dims = [256, 256, 256, 256]  # 4conv1fc box head
model.roi_heads.box_head.fc_dims = [1024]

image_size = 1024
dataloader.train.mapper.augmentations = [
    L(T.ResizeScale)(min_scale=0.1, max_scale=2.0, target_height=image_size, target_width=image_size),
    L(T.FixedSizeCrop)(crop_size=(image_size, image_size)),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.mapper.recompute_boxes = True  # boxes from the cropped masks
dataloader.train.total_batch_size = 64

train.max_iter = 156250
train.eval_period = 0
lr_multiplier.scheduler.milestones = [138889, 150463]
lr_multiplier.warmup_length = 500 / train.max_iter
lr_multiplier.warmup_factor = 0.067
optimizer.lr = 0.1
optimizer.weight_decay = 4e-5

train.output_dir = "output/lazy/mask_rcnn_R_50_FPN_100ep_LSJ_lvis_v1"

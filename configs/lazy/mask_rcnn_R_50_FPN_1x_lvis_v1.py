"""Mask R-CNN R50-FPN 1x on LVIS v1 with repeat factor sampling: the LazyConfig twin of the YACS
configs/LVISv1/mask_rcnn_R_50_FPN_1x.yaml (detectron2's LVIS baseline), the loss chosen by one line:

    python train_net.py --config-file configs/lazy/mask_rcnn_R_50_FPN_1x_lvis_v1.py --num-gpus 8 \
        model.roi_heads.box_predictor.cls_loss.name=seesaw
"""
from .common.lvis_v1_data import dataloader  # noqa: F401
from .common.mask_rcnn_fpn_lt import model
from .common.schedule import lr_multiplier, optimizer, train  # noqa: F401  (the config's parts)

model.roi_heads.box_predictor.cls_loss.name = "softmax_ce"  # the method: any lt_det loss name

train.output_dir = "output/lazy/mask_rcnn_R_50_FPN_1x_lvis_v1"

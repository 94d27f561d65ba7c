"""lt_det's box predictor and loss in detectron2 main's ViTDet LVIS config
(projects/ViTDet/configs/LVIS/mask_rcnn_vitdet_b_100ep.py: ViT-B with MAE init, simple feature
pyramid, 100 epochs of LSJ, repeat factor sampling, sigmoid CE with the federated loss).

detectron2's package does not install projects/: point DETECTRON2_DIR at a detectron2 (main)
source checkout. Only the box predictor and the evaluator change; the rest is ViTDet's recipe:

    DETECTRON2_DIR=~/detectron2 python train_net.py --num-gpus 8 \
        --config-file configs/lazy/vitdet/mask_rcnn_vitdet_b_100ep_lvis_lt.py \
        model.roi_heads.box_predictor.cls_loss.name=seesaw

detectron2 0.6 has no ViT backbone: this config needs main.
"""
import os

from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig

from lt_det.lazy import class_frequency, lt_loss, lvis_evaluator
from lt_det.modeling.fast_rcnn import LTFastRCNNOutputLayers
from lt_det.modeling.roi_heads import LTStandardROIHeads

_VITDET_LVIS = os.path.join(os.path.expanduser(os.environ.get("DETECTRON2_DIR", "")),
                            "projects/ViTDet/configs/LVIS/mask_rcnn_vitdet_b_100ep.py")
if not os.path.isfile(_VITDET_LVIS):
    raise FileNotFoundError(
        f"ViTDet's LVIS config not found at {_VITDET_LVIS!r}: set DETECTRON2_DIR to a detectron2 main "
        "source checkout (git clone https://github.com/facebookresearch/detectron2)")
_vitdet = LazyConfig.load(_VITDET_LVIS)
dataloader, model, train, lr_multiplier, optimizer = (
    _vitdet.dataloader, _vitdet.model, _vitdet.train, _vitdet.lr_multiplier, _vitdet.optimizer)

_TRAIN_DATASETS = "${dataloader.train.dataset.names}"
_stock = model.roi_heads.box_predictor
model.roi_heads._target_ = LTStandardROIHeads
model.roi_heads.box_predictor = L(LTFastRCNNOutputLayers)(
    input_shape=_stock.input_shape,
    box2box_transform=_stock.box2box_transform,
    num_classes="${..num_classes}",
    test_score_thresh=_stock.test_score_thresh,  # ViTDet's LVIS values: 0.02, 300 per image
    test_topk_per_image=_stock.test_topk_per_image,
    # "federated" is ViTDet's own loss (sigmoid CE, 50 sampled classes, weights image_count^0.5);
    # any lt_det loss name swaps in another method
    cls_loss=L(lt_loss)(name="federated", num_classes="${..num_classes}", train_datasets=_TRAIN_DATASETS),
    class_frequency=L(class_frequency)(train_datasets=_TRAIN_DATASETS),
)
# lt_det's LVIS evaluator: APr / APc / APf, Fixed AP on request, per-class outputs
dataloader.evaluator = L(lvis_evaluator)(
    dataset_name="${..test.dataset.names}",
    output_dir="${train.output_dir}",
    tasks=("bbox", "segm"),
    train_datasets="${..train.dataset.names}",
)
train.output_dir = "output/lazy/mask_rcnn_vitdet_b_100ep_lvis_lt"

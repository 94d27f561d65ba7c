"""LVIS v1 data in LazyConfig form: repeat factor sampling (t = 0.001) over ``lvis_v1_train``,
lt_det's LVIS evaluator on ``lvis_v1_val``.

detectron2's LVIS recipe (the YACS configs/Base-LVIS-MaskRCNN-FPN.yaml): multi-scale training
(shorter side 640-800, at most 1333), 800 / 1333 at test time, 16 images per step.
"""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import build_detection_test_loader, get_detection_dataset_dicts

from lt_det.data import LTDatasetMapper
from lt_det.lazy import lt_train_loader, lvis_evaluator

dataloader = dict(
    train=L(lt_train_loader)(
        dataset=L(get_detection_dataset_dicts)(names="lvis_v1_train"),
        mapper=L(LTDatasetMapper)(
            is_train=True,
            augmentations=[
                L(T.ResizeShortestEdge)(
                    short_edge_length=(640, 672, 704, 736, 768, 800), sample_style="choice", max_size=1333,
                ),
                L(T.RandomFlip)(horizontal=True),
            ],
            image_format="BGR",
            use_instance_mask=True,
        ),
        total_batch_size=16,
        # "TrainingSampler" (uniform), "RepeatFactorTrainingSampler" (RFS, Gupta et al. 2019) or
        # "ClassAwareSampler" (Shen et al. 2016; cRT's stage 2)
        sampler="RepeatFactorTrainingSampler",
        repeat_threshold=0.001,  # RFS t (LVIS paper)
        repeat_sqrt=True,  # r_c = max(1, sqrt(t / f_c)) (LVIS paper); False: max(1, t / f_c)
        seed="${train.seed}",  # < 0: a seed shared by all processes
        num_workers=4,
        # True: --resume continues with the batches of an uninterrupted run (lt_det.data.resumable;
        # YACS: DATALOADER.EXACT_RESUME); False: detectron2's loader, which restarts its stream
        exact_resume=True,
    ),
    test=L(build_detection_test_loader)(
        dataset=L(get_detection_dataset_dicts)(names="lvis_v1_val", filter_empty=False),
        mapper=L(LTDatasetMapper)(
            is_train=False,
            augmentations=[L(T.ResizeShortestEdge)(short_edge_length=800, max_size=1333)],
            image_format="${...train.mapper.image_format}",
        ),
        num_workers=4,
    ),
    evaluator=L(lvis_evaluator)(
        dataset_name="${..test.dataset.names}",
        output_dir="${train.output_dir}",
        tasks=("bbox", "segm"),
        train_datasets="${..train.dataset.names}",  # per-class outputs by training image count
        # backend: "hotcoco" (default), "faster_coco_eval" or "lvis" (lvis-api); see lt_det.evaluation
        fixed_ap_dets_per_class=None,  # Fixed AP (Dave et al. 2021): 10000 detections per class
    ),
)

"""Config keys of LVIS evaluation, under ``cfg.TEST.LVIS_EVAL``.

Read by :func:`lt_det.evaluation.build_lvis_evaluator` (evaluation) and by the ROI heads'
inference (Fixed AP's inference mode). Existing detectron2 keys that matter and are not redefined:
``MODEL.ROI_HEADS.SCORE_THRESH_TEST`` (LVIS: 1e-4), ``MODEL.ROI_HEADS.NMS_THRESH_TEST``,
``TEST.DETECTIONS_PER_IMAGE`` (LVIS: 300; ignored in Fixed AP's inference mode), ``MODEL.MASK_ON``
(adds the segm task).
"""
from detectron2.config import CfgNode as CN

from .backends import DEFAULT_BACKEND

__all__ = ["add_evaluation_config"]


def add_evaluation_config(cfg) -> None:
    cfg.TEST.LVIS_EVAL = CN()
    # AP implementation: "hotcoco" (default: the fastest that equals lvis-api to 1e-4 on every
    # metric in tests/evaluation and tools/benchmark_eval.py), "faster_coco_eval", or "lvis"
    # (lvis-api itself, the reference; on 5,000 images x 300 detections it took 115x hotcoco's
    # time for bbox and 33x for segm). All follow lvis-api's protocol: top 300 detections per
    # image across classes, federated negatives, not-exhaustive classes.
    cfg.TEST.LVIS_EVAL.BACKEND = DEFAULT_BACKEND
    # Write per-class AP with frequency group and training image count (CSV, JSON) and plots
    # of AP against training image count and of AP by group, next to the results files.
    cfg.TEST.LVIS_EVAL.PER_CLASS = True

    # Fixed AP (Dave et al. 2021, "Evaluating Large-Vocabulary Object Detectors: The Devil is in
    # the Details"): no per-image cap; each class's top DETS_PER_CLASS detections over the split.
    cfg.TEST.LVIS_EVAL.FIXED_AP = CN()
    # Also report {task}_fixed_ap metrics, and switch the box head's inference to per-class top-k
    # with no per-image cap (lt_det.modeling.fixed_ap_inference). Standard AP
    # is still reported from the same detections (capped to 300 per image at evaluation).
    cfg.TEST.LVIS_EVAL.FIXED_AP.ENABLED = False
    # K of Fixed AP: detections kept per class over the whole split (10,000 for LVIS, as the paper).
    cfg.TEST.LVIS_EVAL.FIXED_AP.DETS_PER_CLASS = 10000
    # Inference mode: detections kept per class per image after NMS (no cap across classes). 300,
    # LVIS's per-image budget, given to each class: standard AP from these detections then equals
    # standard inference's, since an image's top 300 overall hold at most 300 of any one class.
    cfg.TEST.LVIS_EVAL.FIXED_AP.TOPK_PER_CLASS_PER_IMAGE = 300

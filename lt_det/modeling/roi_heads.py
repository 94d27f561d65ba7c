"""ROI heads whose box predictor is :class:`LTFastRCNNOutputLayers` (MODEL.ROI_HEADS.NAME).

Each overrides ``_init_box_head``: it calls detectron2's, then swaps the predictor(s). The training
class statistics are read once per model build and handed to every predictor.
"""
import torch

from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, CascadeROIHeads, StandardROIHeads

from lt_det.data.image_labels import IMAGE_LABELS_FIELD

from .fast_rcnn import LTFastRCNNOutputLayers, read_class_stats

__all__ = ["LTStandardROIHeads", "LTCascadeROIHeads"]


@ROI_HEADS_REGISTRY.register()
class LTStandardROIHeads(StandardROIHeads):
    """StandardROIHeads with the long-tail box predictor."""

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        ret = super()._init_box_head(cfg, input_shape)
        ret["box_predictor"] = LTFastRCNNOutputLayers(cfg, ret["box_head"].output_shape,
                                                      class_stats=read_class_stats(cfg))
        return ret


@ROI_HEADS_REGISTRY.register()
class LTCascadeROIHeads(CascadeROIHeads):
    """CascadeROIHeads with the long-tail box predictor in every stage (each its own loss)."""

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        if cfg.TEST.LVIS_EVAL.FIXED_AP.ENABLED:
            # detectron2's CascadeROIHeads._forward_box calls fast_rcnn_inference itself, past
            # the predictor's inference; switching it would mean forking that method.
            raise NotImplementedError(
                "TEST.LVIS_EVAL.FIXED_AP.ENABLED (Fixed AP's inference mode) is implemented for "
                "LTStandardROIHeads only; evaluate a cascade model with it disabled."
            )
        ret = super()._init_box_head(cfg, input_shape)
        stats = read_class_stats(cfg)
        ret["box_predictors"] = [
            LTFastRCNNOutputLayers(cfg, head.output_shape, box2box_transform=stage.box2box_transform,
                                   class_stats=stats)
            for head, stage in zip(ret["box_heads"], ret["box_predictors"])
        ]
        return ret

    @torch.no_grad()
    def _match_and_label_boxes(self, proposals, stage, targets):
        """detectron2's labelling of stages > 0, which copies only gt_classes / gt_boxes, plus the
        image-level labels (``gt_image_labels``: every row of an image's is the same)."""
        proposals = super()._match_and_label_boxes(proposals, stage, targets)
        for proposals_per_image, targets_per_image in zip(proposals, targets):
            if len(targets_per_image) and targets_per_image.has(IMAGE_LABELS_FIELD):
                labels = targets_per_image.get(IMAGE_LABELS_FIELD)[:1]
                proposals_per_image.set(IMAGE_LABELS_FIELD, labels.expand(len(proposals_per_image), -1))
        return proposals

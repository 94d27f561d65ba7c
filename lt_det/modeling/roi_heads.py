"""ROI heads whose box predictor is :class:`LTFastRCNNOutputLayers` (MODEL.ROI_HEADS.NAME).

Each overrides ``_init_box_head``: it calls detectron2's, then swaps the predictor(s). The training
class statistics are read once per model build and handed to every predictor.
:class:`LTStandardROIHeads` also runs LOCE's memory-augmented feature sampling when
MODEL.ROI_HEADS.MFS asks for it (:mod:`lt_det.modeling.feature_memory`).
"""
from typing import Optional

import torch

from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, CascadeROIHeads, StandardROIHeads
from detectron2.structures import Boxes, Instances

from lt_det.data.image_labels import IMAGE_LABELS_FIELD
from lt_det.losses.loce import OBJECT_IDS_FIELD

from .fast_rcnn import LTFastRCNNOutputLayers, read_class_stats
from .feature_memory import ClassFeatureMemory, MemoryBatch, jitter_boxes, memory_from_config

__all__ = ["LTStandardROIHeads", "LTCascadeROIHeads"]


@ROI_HEADS_REGISTRY.register()
class LTStandardROIHeads(StandardROIHeads):
    """StandardROIHeads with the long-tail box predictor, and optionally LOCE's MFS."""

    @configurable
    def __init__(self, *, memory: Optional[ClassFeatureMemory] = None, **kwargs):
        """
        Args:
            memory: MFS's per-class feature memory (None: no MFS); see detectron2's
                StandardROIHeads for the other arguments.
        """
        super().__init__(**kwargs)
        if memory is not None and self.train_on_pred_boxes:
            raise ValueError("MODEL.ROI_HEADS.MFS does not support MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES")
        self.memory = memory
        self._memory_batch: Optional[MemoryBatch] = None  # set by forward() for this step's _forward_box

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["memory"] = memory_from_config(cfg)
        return ret

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        ret = super()._init_box_head(cfg, input_shape)
        ret["box_predictor"] = LTFastRCNNOutputLayers(cfg, ret["box_head"].output_shape,
                                                      class_stats=read_class_stats(cfg))
        return ret

    def forward(self, images, features, proposals, targets=None):
        if not (self.training and self.memory is not None):
            return super().forward(images, features, proposals, targets)
        self._memory_batch = self._update_memory(features, targets)
        try:
            return super().forward(images, features, proposals, targets)
        finally:
            self._memory_batch = None

    @torch.no_grad()
    def _update_memory(self, features, targets) -> Optional[MemoryBatch]:
        """MFS steps 1-3: the gt boxes' 16 jittered boxes each, their pooled features into the
        memory, then this step's draw (with the LOCE statistic before this step's update)."""
        pooler_input = [features[f] for f in self.box_in_features]
        jittered = [jitter_boxes(t.gt_boxes.tensor, t.image_size) for t in targets]
        pooled = self.box_pooler(pooler_input, [Boxes(j) for j in jittered])
        classes = cat([t.gt_classes.repeat_interleave(16) for t in targets])
        gt_boxes = cat([t.gt_boxes.tensor.repeat_interleave(16, dim=0) for t in targets])
        self.memory.push(pooled, classes, cat(jittered), gt_boxes)
        return self.memory.sample(self.box_predictor.cls_loss.mean_score, self.num_classes, pooled.device)

    def _forward_box(self, features, proposals):
        batch = self._memory_batch
        if not self.training or batch is None:
            return super()._forward_box(features, proposals)
        # MFS step 4: the drawn entries go through the box head after the step's RoIs and join the
        # box losses as one more "image" (not the mask head, which reads `proposals`).
        box_features = self.box_pooler([features[f] for f in self.box_in_features],
                                       [x.proposal_boxes for x in proposals])
        box_features = self.box_head(cat([box_features, batch.features.to(box_features.dtype)]))
        predictions = self.box_predictor(box_features)
        memory_rois = Instances(proposals[0].image_size, proposal_boxes=Boxes(batch.boxes),
                                gt_boxes=Boxes(batch.gt_boxes), gt_classes=batch.classes)
        memory_rois.set(OBJECT_IDS_FIELD, batch.classes)  # LOCE: one object per drawn class
        return self.box_predictor.losses(predictions, list(proposals) + [memory_rois])


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

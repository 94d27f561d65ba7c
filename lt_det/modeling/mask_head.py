"""A mask head whose inference memory does not grow with the number of classes.

detectron2's ``MaskRCNNConvUpsampleHead`` predicts all K class masks for every detection and
``mask_rcnn_inference`` then keeps the predicted class's: at LVIS test settings (K = 1203,
R = 300 detections per image, M = 28) the (R, K, M, M) fp32 logits alone are
300 * 1203 * 28 * 28 * 4 B = 1.13 GB per image, 99.9% of it discarded.

:class:`ClassSelectMaskRCNNConvUpsampleHead` has the same modules, weights and training loss.
In inference it runs the detections through the head ``inference_chunk_size`` at a time and
evaluates the 1x1 predictor only for each detection's predicted class (the predictor's output for
class c is ``w_c . x + b_c``), so the logits are (R, 1, M, M) and the activations are bounded by
the chunk. The masks equal detectron2's up to float summation order.

Select it with ``MODEL.ROI_MASK_HEAD.NAME: "ClassSelectMaskRCNNConvUpsampleHead"``.
Shorthand: R detections (all images of the batch), C channels, K classes, M mask side.
"""
from typing import List

import torch

from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling.roi_heads.mask_head import (
    ROI_MASK_HEAD_REGISTRY,
    MaskRCNNConvUpsampleHead,
    mask_rcnn_inference,
)
from detectron2.structures import Instances

__all__ = ["ClassSelectMaskRCNNConvUpsampleHead"]


@ROI_MASK_HEAD_REGISTRY.register()
class ClassSelectMaskRCNNConvUpsampleHead(MaskRCNNConvUpsampleHead):
    @configurable
    def __init__(self, input_shape, *, inference_chunk_size: int = 64, **kwargs):
        """
        Args:
            inference_chunk_size: detections per forward pass in inference. 64 bounds the
                activations at C = 256, M = 28 to 64 * 256 * 28 * 28 * 4 B = 51 MB per tensor.
            others: as ``MaskRCNNConvUpsampleHead``.
        """
        super().__init__(input_shape, **kwargs)
        self.inference_chunk_size = inference_chunk_size

    def _predicted_class_logits(self, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """(r, C, M/2, M/2) features and (r,) classes -> (r, 1, M, M) logits of those classes."""
        *body, predictor = list(self)
        assert predictor is self.predictor
        for layer in body:
            x = layer(x)
        weight = predictor.weight[classes, :, 0, 0]  # (r, C)
        logits = torch.einsum("rchw,rc->rhw", x, weight)
        if predictor.bias is not None:
            logits = logits + predictor.bias[classes][:, None, None]
        return logits[:, None]

    def forward(self, x: torch.Tensor, instances: List[Instances]):
        if self.training:
            return super().forward(x, instances)
        if self.predictor.out_channels == 1:  # class-agnostic masks
            classes = torch.zeros(len(x), dtype=torch.long, device=x.device)
        else:
            classes = cat([i.pred_classes for i in instances])
        # split() of an empty tensor gives one empty chunk, so no detections is no special case.
        logits = cat([
            self._predicted_class_logits(xs, cs)
            for xs, cs in zip(x.split(self.inference_chunk_size), classes.split(self.inference_chunk_size))
        ])
        # One channel: detectron2 treats it as class-agnostic, i.e. takes it for every detection.
        mask_rcnn_inference(logits, instances)
        return instances

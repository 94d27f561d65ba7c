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

With ``MODEL.ROI_MASK_HEAD.COSINE_TEMPERATURE`` > 0 its 1x1 predictor is GOL's normalised one
(:class:`lt_det.modeling.cosine.CosineConv2d`, as GOL's released config uses it with t = 20).

Shorthand: R detections (all images of the batch), C channels, K classes, M mask side.
"""
from typing import List

import torch
from torch import nn

from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling.roi_heads.mask_head import (
    ROI_MASK_HEAD_REGISTRY,
    MaskRCNNConvUpsampleHead,
    mask_rcnn_inference,
)
from detectron2.structures import Instances

from .cosine import CosineConv2d

__all__ = ["ClassSelectMaskRCNNConvUpsampleHead", "add_mask_head_config"]


def add_mask_head_config(cfg) -> None:
    """Adds ``MODEL.ROI_MASK_HEAD.COSINE_TEMPERATURE`` (in place)."""
    # Temperature t of a normalised (cosine) 1x1 mask predictor; 0 keeps detectron2's plain conv.
    # GOL (Alexandridis et al., released config): 20. Read by ClassSelectMaskRCNNConvUpsampleHead.
    cfg.MODEL.ROI_MASK_HEAD.COSINE_TEMPERATURE = 0.0


@ROI_MASK_HEAD_REGISTRY.register()
class ClassSelectMaskRCNNConvUpsampleHead(MaskRCNNConvUpsampleHead):
    @configurable
    def __init__(self, input_shape, *, inference_chunk_size: int = 64, cosine_temperature: float = 0.0, **kwargs):
        """
        Args:
            inference_chunk_size: detections per forward pass in inference. 64 bounds the
                activations at C = 256, M = 28 to 64 * 256 * 28 * 28 * 4 B = 51 MB per tensor.
            cosine_temperature: > 0 makes the predictor a :class:`CosineConv2d` with this t.
            others: as ``MaskRCNNConvUpsampleHead``.
        """
        super().__init__(input_shape, **kwargs)
        self.inference_chunk_size = inference_chunk_size
        if cosine_temperature > 0:
            plain = self.predictor
            self.predictor = CosineConv2d(plain.in_channels, plain.out_channels, cosine_temperature)
            nn.init.normal_(self.predictor.weight, std=0.001)  # detectron2's predictor init
            nn.init.constant_(self.predictor.bias, 0)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["cosine_temperature"] = cfg.MODEL.ROI_MASK_HEAD.COSINE_TEMPERATURE
        return ret

    def _predicted_class_logits(self, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """(r, C, M/2, M/2) features and (r,) classes -> (r, 1, M, M) logits of those classes."""
        *body, predictor = list(self)
        assert predictor is self.predictor
        for layer in body:
            x = layer(x)
        weight = predictor.weight
        if isinstance(predictor, CosineConv2d):
            x, weight = predictor.normalized_input(x), predictor.normalized_weight()
        weight = weight[classes, :, 0, 0]  # (r, C)
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

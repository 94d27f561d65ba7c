"""The long-tail box predictor: detectron2's FastRCNNOutputLayers with a pluggable loss.

Shape shorthand in this module:

    N: number of images in the minibatch
    R: number of RoIs, combined over all images
    K: number of foreground classes; label K is background
    L: number of classification logits, ``cls_loss.num_logits(K)`` (K + 1 for softmax CE)

The loss (an :class:`lt_det.losses.LTLoss`) decides the classifier's shape and init, the training
loss, and the test scores (R, K + 1) with background last. Box regression is detectron2's.
"""
import logging
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from detectron2.structures import Instances
from detectron2.utils.events import get_event_storage

from lt_det.calibration.base import Calibration
from lt_det.calibration.config import build_calibration
from lt_det.data.class_stats import FREQUENCY_GROUPS, ClassStats, get_class_stats
from lt_det.modeling.fixed_ap_inference import fast_rcnn_inference_top_k_per_class
from lt_det.losses import LTLoss, build_loss
from lt_det.losses.base import check_num_classes

from .cosine import CosineLinear

__all__ = ["LTFastRCNNOutputLayers"]

logger = logging.getLogger(__name__)


class LTFastRCNNOutputLayers(FastRCNNOutputLayers):
    """FastRCNNOutputLayers whose classifier, classification loss and scores come from ``cls_loss``.

    Per step it logs detectron2's ``fast_rcnn/{cls_accuracy, fg_cls_accuracy, false_negative}``
    and, when class frequency groups are known, ``fast_rcnn/{fg_cls_accuracy, false_negative}_{r,c,f}``
    over the foreground RoIs of each LVIS frequency group.
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        cls_loss: LTLoss,
        class_frequency: Optional[Sequence[str]] = None,
        fixed_ap_topk_per_class: Optional[int] = None,
        cosine_temperature: float = 0.0,
        gumbel_temperature: float = 1.0,
        calibration: Optional[Calibration] = None,
        **kwargs,
    ):
        """
        Args:
            input_shape, kwargs: as FastRCNNOutputLayers.
            cls_loss: the classification loss; its ``num_classes`` must equal ``num_classes``.
            class_frequency: (K,) "r" / "c" / "f" of each class, for the per-group statistics;
                None logs the overall statistics only.
            fixed_ap_topk_per_class: Fixed AP's inference mode: keep this many detections per
                class per image and no cap across classes; None = detectron2's inference.
            cosine_temperature: > 0 makes the classifier a :class:`CosineLinear` with this
                temperature (mmdetection's Seesaw LVIS config: 20); 0 = ``nn.Linear``.
            gumbel_temperature: beta of a Gumbel activation, eta(z / beta): the logits are divided
                by it (1 = the standard Gumbel); only for a loss whose scores are Gumbel's.
            calibration: re-scores the test scores before detectron2's inference
                (:mod:`lt_det.calibration`); None = the loss's scores as they are.
        """
        super().__init__(input_shape, **kwargs)
        if cls_loss.num_classes != self.num_classes:
            raise ValueError(f"cls_loss has {cls_loss.num_classes} classes, the predictor {self.num_classes}")
        if isinstance(input_shape, int):
            input_shape = ShapeSpec(channels=input_shape)
        input_size = input_shape.channels * (input_shape.width or 1) * (input_shape.height or 1)
        self.cls_loss = cls_loss
        num_logits = cls_loss.num_logits(self.num_classes)
        if cosine_temperature > 0:
            self.cls_score = CosineLinear(input_size, num_logits, cosine_temperature)
        else:
            self.cls_score = nn.Linear(input_size, num_logits)
        cls_loss.init_classifier(self.cls_score)
        # (K,) index into FREQUENCY_GROUPS of each class, or None.
        group = None
        if class_frequency is not None:
            frequency = np.asarray(class_frequency)
            group = torch.as_tensor(np.stack([frequency == g for g in FREQUENCY_GROUPS]).argmax(0))
        self.register_buffer("frequency_group", group, persistent=False)
        self.fixed_ap_topk_per_class = fixed_ap_topk_per_class
        if gumbel_temperature != 1.0:
            if gumbel_temperature <= 0:
                raise ValueError(f"MODEL.LT_LOSS.GUMBEL_TEMPERATURE must be > 0, got {gumbel_temperature}")
            if cls_loss.score_activation != "gumbel":
                raise ValueError(f"MODEL.LT_LOSS.GUMBEL_TEMPERATURE {gumbel_temperature} needs a Gumbel activation "
                                 f"(gumbel_ce, or MODEL.LT_LOSS.ACTIVATION 'gumbel'); this loss's scores are "
                                 f"{cls_loss.score_activation!r}")
            if calibration is not None and calibration.reads_classifier:
                raise ValueError("MODEL.LT_LOSS.GUMBEL_TEMPERATURE is not supported with a calibration that "
                                 "re-derives logits from the classifier's weights (TEST.CALIBRATION.METHOD tau_norm)")
        self.gumbel_temperature = gumbel_temperature
        self.calibration = calibration
        # Set by lt_det.engine's LogitGradStatsHook; typed only by its ``observe(logits,
        # gt_classes)`` because modeling may not import engine.
        self.logit_grad_stats = None

    @classmethod
    def from_config(cls, cfg, input_shape, class_stats: Optional[ClassStats] = None):
        """``class_stats``: the training statistics, read once per model build by the ROI heads
        (:func:`read_class_stats`); read here when not given."""
        ret = super().from_config(cfg, input_shape)
        # detectron2 main's own classification-loss arguments: the loss below implements their
        # keys (USE_SIGMOID_CE: "sigmoid_ce", with USE_FED_LOSS: "federated"), so the base class
        # must not build its own (its federated weights would also be a buffer 0.6's models lack)
        for key in ("use_sigmoid_ce", "use_fed_loss", "get_fed_loss_cls_weights", "fed_loss_num_classes"):
            ret.pop(key, None)
        if class_stats is None:
            class_stats = read_class_stats(cfg)
        ret["cls_loss"] = build_loss(cfg, class_stats)
        ret["class_frequency"] = None if class_stats is None else class_stats.frequency
        fixed_ap = cfg.TEST.LVIS_EVAL.FIXED_AP
        ret["fixed_ap_topk_per_class"] = fixed_ap.TOPK_PER_CLASS_PER_IMAGE if fixed_ap.ENABLED else None
        ret["cosine_temperature"] = cfg.MODEL.LT_LOSS.COSINE_TEMPERATURE
        ret["gumbel_temperature"] = cfg.MODEL.LT_LOSS.GUMBEL_TEMPERATURE
        ret["calibration"] = build_calibration(cfg, class_stats)
        return ret

    def forward(self, x):
        """detectron2's (R, L) logits and (R, K * 4) deltas, the logits divided by the Gumbel
        temperature beta when it is not 1."""
        scores, proposal_deltas = super().forward(x)
        if self.gumbel_temperature != 1.0:
            scores = scores / self.gumbel_temperature
        return scores, proposal_deltas

    def inference(self, predictions: Tuple[torch.Tensor, torch.Tensor], proposals: List[Instances]):
        """detectron2's inference, or Fixed AP's (per-class top-k, no per-image cap) when enabled."""
        if self.fixed_ap_topk_per_class is None:
            return super().inference(predictions, proposals)
        return fast_rcnn_inference_top_k_per_class(
            self.predict_boxes(predictions, proposals), self.predict_probs(predictions, proposals),
            [x.image_size for x in proposals], self.test_score_thresh, self.test_nms_thresh,
            self.fixed_ap_topk_per_class,
        )

    def losses(self, predictions: Tuple[torch.Tensor, torch.Tensor], proposals: List[Instances]):
        """
        Args:
            predictions: (R, L) logits and (R, K * 4) or (R, 4) deltas from :meth:`forward`.
            proposals: the N images' sampled proposals with ``proposal_boxes``, ``gt_classes``
                (and ``gt_boxes``); passed on to the loss as ``proposals``.

        Returns:
            dict with "loss_cls" and "loss_box_reg".
        """
        scores, proposal_deltas = predictions
        if len(proposals):
            gt_classes = cat([p.gt_classes for p in proposals], dim=0)
            proposal_boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)
            assert not proposal_boxes.requires_grad, "Proposals should not require gradients!"
            # Images without gt have only background proposals; their boxes are placeholders.
            gt_boxes = cat(
                [(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals], dim=0
            )
        else:
            gt_classes = torch.empty(0, dtype=torch.long, device=scores.device)
            proposal_boxes = gt_boxes = torch.empty((0, 4), device=proposal_deltas.device)
        self._log_classification_stats(scores, gt_classes)
        if self.logit_grad_stats is not None and self.training:
            self.logit_grad_stats.observe(scores, gt_classes)

        losses = {
            "loss_cls": self.cls_loss(scores, gt_classes, proposals=proposals),
            "loss_box_reg": self.box_reg_loss(proposal_boxes, gt_boxes, proposal_deltas, gt_classes),
        }
        return {k: v * self.loss_weight.get(k, 1.0) for k, v in losses.items()}

    def predict_probs(self, predictions: Tuple[torch.Tensor, torch.Tensor], proposals: List[Instances]):
        """
        Returns:
            list[Tensor]: per image (Ri, K + 1) class probabilities, background last, calibrated
            when the predictor has a calibration.
        """
        logits, _ = predictions
        num_inst_per_image = [len(p) for p in proposals]
        probs = self.cls_loss.scores(logits)
        if self.calibration is not None:
            probs = self.calibration(probs, logits, self.cls_loss, self.cls_score)
        return probs.split(num_inst_per_image, dim=0)

    @torch.no_grad()
    def _log_classification_stats(self, logits: torch.Tensor, gt_classes: torch.Tensor, prefix: str = "fast_rcnn"):
        """Accuracy and false-negative rate to EventStorage; (R, L) logits, (R,) labels."""
        if gt_classes.numel() == 0:
            return
        storage = get_event_storage()
        pred_classes = self.cls_loss.predict_classes(logits)
        bg = self.num_classes
        storage.put_scalar(f"{prefix}/cls_accuracy", (pred_classes == gt_classes).sum().item() / gt_classes.numel())
        fg = gt_classes < bg
        groups = [("", fg)]
        if self.frequency_group is not None:
            group_of_gt = self.frequency_group[gt_classes.clamp(max=bg - 1)]
            groups += [(f"_{g}", fg & (group_of_gt == i)) for i, g in enumerate(FREQUENCY_GROUPS)]
        for suffix, rois in groups:
            num = rois.sum().item()
            if num > 0:
                correct = (pred_classes[rois] == gt_classes[rois]).sum().item()
                missed = (pred_classes[rois] == bg).sum().item()
                storage.put_scalar(f"{prefix}/fg_cls_accuracy{suffix}", correct / num)
                storage.put_scalar(f"{prefix}/false_negative{suffix}", missed / num)


def read_class_stats(cfg) -> Optional[ClassStats]:
    """Statistics of cfg.DATASETS.TRAIN checked against the config's class count, or None (with a
    warning) when the dataset has none: then no per-group statistics are logged, and a loss that
    needs statistics raises its own error saying what is missing."""
    try:
        stats = get_class_stats(cfg.DATASETS.TRAIN)
    except (KeyError, ValueError) as e:
        logger.warning(f"No per-group classification statistics will be logged: {e}")
        return None
    check_num_classes(cfg, stats)
    return stats

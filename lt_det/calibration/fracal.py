"""FRACAL, fractal calibration (Alexandridis et al., "Fractal Calibration for Long-tailed Object
Detection", CVPR 2025; released code: kostas1515/FRACAL, mmdetection,
``fracal_bbox_head.py`` with ``variant='base10'``, ``fractal_l=2.0`` in its LVIS configs).

Two per-class terms from the training set (K classes, M training images):

    u_c = -log10(K · N_c / M)          N_c: training images holding class c (frequency term)
    D_c                                 fractal dimension of class c's box centres in image space
                                        (:mod:`lt_det.calibration.fractal_dimension`)

* one distribution (softmax): the released head computes ``softmax(z + u)`` (u added to the class
  logits, 0 to the background's), divides class c by ``D_c^λ`` (the background by 1) and
  normalises the row:  ``p̃_c ∝ p_c · e^(u_c) / D_c^λ``,  ``p̃_bg ∝ p_bg``;
* independent class scores (sigmoid, Gumbel):

      p̃_c = p_c · act(z_c + u_c + f_c),    f_c = -log10(K · D_c^λ / Σ_k D_k^λ)

  with ``z_c = act⁻¹(p_c)`` (the released head uses the raw class logit, the same thing for a
  plain sigmoid or Gumbel classifier).

u is in base-10 units added to natural-log logits, as released. The released code's other
frequency variants (raw, base2, smooth, prob, normit, gombit, and their instance-count "_obj"
forms) are not implemented. M here is the number of training images with annotations; the
released script counts every image of the json (LVIS v1 train: 99,388 of 100,170 images have
annotations, which moves every u_c by log10(100170 / 99388) = 0.0034).
"""
import functools
import logging
import os
from typing import Optional

import numpy as np
import torch

from detectron2.config import CfgNode as CN
from detectron2.data import MetadataCatalog

from lt_det.data.class_stats import ClassStats

from .base import Calibration, reweight_distribution, shifted_class_scores, with_class_scores
from .fractal_dimension import fractal_dimensions_from_json, load_fractal_dimensions
from .registry import register_calibration

__all__ = ["FRACAL"]

logger = logging.getLogger(__name__)


@register_calibration("fracal")
class FRACAL(Calibration):
    sweep_key = "LAMBDA"

    def __init__(self, image_count: torch.Tensor, num_images: int, fractal_dimension: torch.Tensor,
                 fractal_lambda: float = 2.0):
        """
        Args:
            image_count: (K,) N_c, training images per class (a class with none counts 1).
            num_images: M.
            fractal_dimension: (K,) D_c (>= 1).
            fractal_lambda: λ, the exponent of D_c.
        """
        super().__init__()
        counts = torch.as_tensor(image_count, dtype=torch.float64).clamp(min=1.0)
        dims = torch.as_tensor(fractal_dimension, dtype=torch.float64)
        if dims.shape != counts.shape:
            raise ValueError(f"FRACAL: {len(dims)} fractal dimensions for {len(counts)} classes")
        k = float(len(counts))
        u = -torch.log10(k * counts / num_images)
        d_pow = dims.pow(fractal_lambda)
        f = -torch.log10(k * d_pow / d_pow.sum())
        self.register_buffer("softmax_weights", (u.exp() / d_pow).float(), persistent=False)  # (K,) e^u_c / D_c^λ
        self.register_buffer("logit_shift", (u + f).float(), persistent=False)  # (K,) u_c + f_c

    @classmethod
    def add_config(cls, node: CN) -> None:
        node.LAMBDA = 2.0  # λ, exponent of the fractal dimension (released LVIS config: fractal_l = 2.0)
        # json of per-class fractal dimensions (tools/fractal_dimension.py); "" = compute them from
        # the training json (DATASETS.TRAIN's json_file) when the model is built
        node.DIMENSIONS_FILE = ""
        node.MAX_GRID = 64  # largest grid (G x G cells) of the box-counting fit (released default)

    @classmethod
    def from_config(cls, cfg, class_stats: ClassStats) -> "FRACAL":
        node = cfg.TEST.CALIBRATION.FRACAL
        dims = _fractal_dimensions(cfg, node, class_stats.num_classes)
        return cls(class_stats.tensor("image_count", dtype=torch.float64), class_stats.num_images,
                   torch.tensor(dims), fractal_lambda=node.LAMBDA)

    def forward(self, scores, logits, loss, classifier):
        if self.is_distribution(loss):
            return reweight_distribution(scores, self.softmax_weights)
        shifted = shifted_class_scores(scores, self.logit_shift, loss.score_activation)
        return with_class_scores(scores, scores[:, : loss.num_classes].float() * shifted)


def _fractal_dimensions(cfg, node: CN, num_classes: int) -> np.ndarray:
    if node.DIMENSIONS_FILE:
        return load_fractal_dimensions(node.DIMENSIONS_FILE, num_classes)
    names = list(cfg.DATASETS.TRAIN)
    json_file: Optional[str] = MetadataCatalog.get(names[0]).get("json_file") if len(names) == 1 else None
    if json_file is None:
        raise ValueError(
            f"FRACAL needs the fractal dimension of each class: DATASETS.TRAIN={tuple(names)} is not one dataset "
            "with a json_file in its metadata. Write them with `python tools/fractal_dimension.py --json "
            "<train json> --output <file>` and set TEST.CALIBRATION.FRACAL.DIMENSIONS_FILE")
    logger.info(f"FRACAL: computing the fractal dimensions of {json_file} (set "
                "TEST.CALIBRATION.FRACAL.DIMENSIONS_FILE to a file from tools/fractal_dimension.py to skip this)")
    dims = _cached_fractal_dimensions(os.path.realpath(json_file), os.stat(json_file).st_mtime_ns, node.MAX_GRID)
    if len(dims) != num_classes:
        raise ValueError(f"FRACAL: {json_file} has {len(dims)} categories, the training statistics {num_classes}")
    return dims


# A cascade builds one box predictor per stage, each with its own calibration: the json is read
# and its dimensions computed once per (file, modification time, grid), not once per stage.
@functools.lru_cache(maxsize=4)
def _cached_fractal_dimensions(json_file: str, mtime_ns: int, max_grid: int) -> np.ndarray:
    dims = fractal_dimensions_from_json(json_file, max_grid=max_grid)
    dims.setflags(write=False)  # shared by every caller
    return dims

"""Config keys of the loss zoo: ``add_loss_config(cfg)`` and ``build_loss(cfg)``.

The keys every loss shares are declared here; each loss declares its own in its ``add_config``
classmethod, which ``add_loss_config`` calls for every registered loss (so a downstream loss
touches no lt_det file; import its module before the config is made). Every key lives under
MODEL.LT_LOSS, except detectron2 main's own box-head keys (MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE,
USE_FED_LOSS, FED_LOSS_NUM_CLASSES, FED_LOSS_FREQ_WEIGHT_POWER), which are added with main's
defaults when this detectron2 lacks them and keep main's meaning: USE_SIGMOID_CE selects
"sigmoid_ce", USE_SIGMOID_CE + USE_FED_LOSS selects "federated".
"""
import inspect
from typing import Optional

from detectron2.config import CfgNode as CN

from lt_det.data.class_stats import ClassStats

from .base import IMPLEMENTATIONS, LTLoss
from .registry import get_loss_class, list_losses


def add_loss_config(cfg: CN) -> None:
    """Add the loss zoo's keys to ``cfg`` (in place). Defaults are the authors' released ones."""
    head = cfg.MODEL.ROI_BOX_HEAD
    # detectron2 main's keys (absent from detectron2 <= 0.6), with main's defaults.
    if "USE_SIGMOID_CE" not in head:
        head.USE_SIGMOID_CE = False  # per-class sigmoid CE instead of softmax CE (main)
    if "USE_FED_LOSS" not in head:
        head.USE_FED_LOSS = False  # federated loss; main requires USE_SIGMOID_CE with it
    if "FED_LOSS_NUM_CLASSES" not in head:
        head.FED_LOSS_NUM_CLASSES = 50  # |S| after sampling (main; Zhou et al. use 50)
    if "FED_LOSS_FREQ_WEIGHT_POWER" not in head:
        head.FED_LOSS_FREQ_WEIGHT_POWER = 0.5  # w_c = image_count_c ^ power (main, Detic)

    cfg.MODEL.LT_LOSS = CN()
    _C = cfg.MODEL.LT_LOSS
    # Registered loss name (lt_det.losses.list_losses()): softmax_ce (detectron2's default),
    # sigmoid_ce, focal, inverse_frequency, class_balanced, class_balanced_focal, balanced_softmax,
    # balanced_sigmoid, eql, softmax_eql, droploss, gumbel_ce, federated, bags, seesaw, eqlv2,
    # acsl, ecm, loce, grw (DisAlign's stage-2 loss), or a downstream one.
    _C.NAME = "softmax_ce"
    # lambda: a class j is "tail" when its image frequency f_j = image_count_j / M < lambda
    # (EQL's T_lambda; also Softmax EQL and DropLoss). 0.0011 is the released LVIS v1 value (815
    # tail classes); LVIS v0.5 configs use 0.00177 (rare + common, 915 classes).
    _C.TAIL_THRESHOLD = 0.0011
    # M in f_j = image_count_j / M for TAIL_THRESHOLD (eql, softmax_eql, droploss): "annotated", the
    # training images with at least one annotation (the released EQL code: LVIS v1 99,388 images),
    # or "all", every image of the training json (EQL's paper: "the image number of the entire
    # dataset", LVIS v1 100,170), which lowers every f_j by 0.8% on v1 (as lambda x 1.008 would).
    _C.TAIL_FREQUENCY_IMAGES = "annotated"
    # Binary activation of eql / droploss / federated / eqlv2 / acsl: "sigmoid" (their released
    # code), or "gumbel" (GOL's Gumbel CDF eta(x) = exp(-exp(-x)), logits clamped to [-4, 10] in
    # training; GOL = droploss + gumbel).
    _C.ACTIVATION = "sigmoid"
    # beta, the scale ("temperature") of the Gumbel activation, eta(z / beta) = exp(-exp(-z / beta))
    # (GOL's appendix A.2 ablates non-standard Gumbel activations): the box predictor divides its
    # logits by beta before every Gumbel loss and its scores, so the training clamp [-4, 10] applies
    # to z / beta (ours: the released code has no temperature). 1.0: the standard Gumbel, GOL's
    # method. Only with a Gumbel activation (gumbel_ce, or ACTIVATION "gumbel").
    _C.GUMBEL_TEMPERATURE = 1.0
    # Temperature t of a normalised (cosine) classifier, t * cos(x, w_k) + b_k, for any loss;
    # 0 keeps the linear classifier. mmdetection's Seesaw LVIS config uses 20 (NormedLinear).
    _C.COSINE_TEMPERATURE = 0.0
    # Which implementation of the loss trains (ours): "reference" (the formula in plain PyTorch,
    # autograd), "fused" (the same formula on fused kernels compiled by torch.compile: one pass,
    # hand-derived gradient; needs a C++ compiler on CPU, Triton on CUDA, and falls back to running
    # uncompiled with a warning), or "auto": fused on CPU, where it is measured and tested, the
    # reference on CUDA until the fused path has been validated on a GPU.
    _C.IMPLEMENTATION = "auto"

    for name in list_losses():
        get_loss_class(name).add_config(cfg)


def resolve_loss_name(cfg: CN) -> str:
    """MODEL.LT_LOSS.NAME, or the loss that detectron2 main's box-head keys select."""
    head, name = cfg.MODEL.ROI_BOX_HEAD, cfg.MODEL.LT_LOSS.NAME
    if head.USE_FED_LOSS and not head.USE_SIGMOID_CE:
        raise ValueError(
            "MODEL.ROI_BOX_HEAD.USE_FED_LOSS needs MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE: True (as in "
            "detectron2 main), or set MODEL.LT_LOSS.NAME: federated instead."
        )
    legacy = "federated" if head.USE_FED_LOSS else "sigmoid_ce" if head.USE_SIGMOID_CE else None
    if legacy is None:
        return name
    if name not in ("softmax_ce", legacy):
        raise ValueError(
            f"MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE / USE_FED_LOSS select '{legacy}' but "
            f"MODEL.LT_LOSS.NAME is '{name}': keep one of the two."
        )
    return legacy


def build_loss(cfg: CN, class_stats: Optional[ClassStats] = None, **overrides) -> LTLoss:
    """The registered loss selected by ``cfg``, built from ``cfg``, with
    MODEL.LT_LOSS.IMPLEMENTATION applied.

    ``class_stats``: the training statistics, read once by the caller for a model build; passed to
    a loss whose ``from_config`` takes ``class_stats`` (the others read what they need from cfg).
    ``overrides``: arguments of the loss's ``__init__`` that replace what ``from_config`` gives
    (detectron2's ``@configurable`` merges them).
    """
    implementation = cfg.MODEL.LT_LOSS.IMPLEMENTATION
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"MODEL.LT_LOSS.IMPLEMENTATION is '{implementation}'; expected one of {IMPLEMENTATIONS}")
    cls = get_loss_class(resolve_loss_name(cfg))
    takes_stats = "class_stats" in inspect.signature(cls.from_config).parameters
    loss = cls(cfg, class_stats=class_stats, **overrides) if takes_stats else cls(cfg, **overrides)
    loss.implementation = implementation
    return loss

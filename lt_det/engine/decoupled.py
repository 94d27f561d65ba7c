"""Decoupled classifier re-training, stage 2: cRT and LWS (Kang et al., "Decoupling Representation
and Classifier for Long-Tailed Recognition", ICLR 2020), DisAlign (Zhang et al., CVPR 2021),
Balanced Sigmoid (Ren et al., BALMS, NeurIPS 2020) and BAGS (Li et al., CVPR 2020) stage 2.

A stage-2 run builds the model for its own loss (which may need a different number of logits),
then, in this order:

1. :func:`prepare_stage2_model` (from ``Trainer.build_model``, before the optimizer exists): wraps
   the classifier in LWS scales or DisAlign's calibration if asked, freezes every parameter that
   no ``DECOUPLED.TRAINABLE`` pattern matches, pins every BatchNorm in eval mode, logs what
   trains. detectron2's optimizer skips parameters without ``requires_grad``, so it then holds
   only the trainable ones.
2. :func:`load_stage1_weights` (from ``Trainer.resume_or_load`` when not resuming stage 2): loads
   the stage-1 checkpoint ``MODEL.WEIGHTS``; the classifier is taken from it or left at the fresh
   initialisation the new loss gave it at build time (``DECOUPLED.CLASSIFIER_INIT``).

Stage 2 may change only the box predictor (its classifier, its loss's state, LWS scales, DisAlign's
parameters); every other tensor must come from the stage-1 checkpoint with the same shape.
"""
import fnmatch
import logging
import types
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel

from detectron2.utils.file_io import PathManager

from lt_det.modeling.disalign import replace_with_disalign
from lt_det.modeling.lws import replace_with_lws

from .checkpoint import SafeCheckpointer

logger = logging.getLogger(__name__)

__all__ = [
    "PREDICTOR",
    "CLASSIFIER",
    "freeze_all_but",
    "pin_batchnorm_eval",
    "load_stage1_checkpoint",
    "prepare_stage2_model",
    "prepare_stage2",
    "load_stage1_weights",
    "stage1_classifier_init",
]

PREDICTOR = "roi_heads.box_predictor"  # detectron2's StandardROIHeads.box_predictor
CLASSIFIER = PREDICTOR + ".cls_score"  # FastRCNNOutputLayers.cls_score
CLASSIFIER_INIT_MODES = ("auto", "reinit", "keep")


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def _matches(name: str, pattern: str) -> bool:
    """A pattern is an fnmatch glob on the full dotted name; naming a module matches its tensors."""
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, pattern + ".*")


def freeze_all_but(model: nn.Module, patterns: Sequence[str]) -> List[str]:
    """Sets ``requires_grad`` True exactly on the parameters matched by a pattern.

    Patterns are fnmatch globs on full parameter names (``roi_heads.box_predictor.cls_score``,
    ``roi_heads.box_head``, ``roi_heads``, ``*cls_score*``); a pattern naming a module matches
    all of its parameters.

    Returns:
        the names of the trainable parameters.
    Raises:
        ValueError: no pattern given, or a pattern that matches no parameter (listing a few names).
    """
    if not patterns:
        raise ValueError("DECOUPLED.TRAINABLE is empty: stage 2 would train nothing")
    named = list(_unwrap(model).named_parameters())
    for pattern in patterns:
        if not any(_matches(name, pattern) for name, _ in named):
            examples = sorted({n.rsplit(".", 1)[0] for n, _ in named})[-8:]
            raise ValueError(f"Trainable pattern {pattern!r} matches no parameter. Some module names: {examples}")
    trainable = []
    for name, param in named:
        param.requires_grad_(any(_matches(name, p) for p in patterns))
        if param.requires_grad:
            trainable.append(name)
    return trainable


def pin_batchnorm_eval(model: nn.Module) -> List[str]:
    """Keeps every BatchNorm layer in eval mode from now on, whatever ``model.train()`` says.

    Their running statistics then never change, and they normalise with the stage-1 statistics in
    training as at test time; their affine parameters can still train. (FrozenBatchNorm2d,
    detectron2's default backbone norm, has no training mode to pin.) Returns the layers' names.
    """
    pinned = []
    for name, module in _unwrap(model).named_modules():
        if isinstance(module, _BatchNorm):
            module.train = types.MethodType(_stay_in_eval, module)
            module.eval()
            pinned.append(name)
    return pinned


def _stay_in_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(self, False)


def _log_trainable(model: nn.Module, trainable: Sequence[str]) -> None:
    params = dict(_unwrap(model).named_parameters())
    count = sum(params[n].numel() for n in trainable)
    total = sum(p.numel() for p in params.values())
    lines = "\n".join(f"  {n} {tuple(params[n].shape)}" for n in trainable)
    logger.info(f"Stage 2 trains {count:,} of {total:,} parameters, in {len(trainable)} tensor(s):\n{lines}")


def _classifier_keys(state: Dict[str, torch.Tensor], classifier: str) -> List[str]:
    """The classifier's own weight and bias (not those of a module inside it: DisAlign's confidence)."""
    return [k for k in state if k in (f"{classifier}.weight", f"{classifier}.bias")]


class _WeightsReader(SafeCheckpointer):
    """A checkpointer whose ``load`` reads the weights and keeps them, loading nothing.

    ``load`` is detectron2's public way to read a checkpoint (``.pth``, detectron2 ``.pkl``, URLs,
    with each version's own checks; main refuses ``_load_file`` called outside ``load``); lt_det's
    :class:`SafeCheckpointer` names an unreadable file. fvcore's
    ``load`` passes what it read to ``_load_model``, the hook its subclasses override (a ``None``
    return skips its report of mismatched keys): here it only keeps the weights.
    """

    def _load_model(self, checkpoint):
        self.weights = checkpoint["model"]


def read_checkpoint_weights(model: nn.Module, path: str) -> Dict[str, torch.Tensor]:
    """The weights saved in the checkpoint ``path`` (as tensors), read as ``model``'s checkpointer
    would read them; ``model`` is left unchanged."""
    reader = _WeightsReader(model)
    reader.load(path, checkpointables=[])
    return {k: torch.as_tensor(v) for k, v in reader.weights.items()}


def load_stage1_checkpoint(
    model: nn.Module,
    path: str,
    *,
    classifier_init: str = "auto",
    classifier: str = CLASSIFIER,
    predictor: str = PREDICTOR,
) -> bool:
    """Loads a stage-1 checkpoint into a stage-2 model, after :func:`freeze_all_but` (which
    parameters train decides which may be new).

    Args:
        path: a detectron2 checkpoint (``.pth`` written by the trainer, or detectron2 ``.pkl``).
        classifier_init: what to do with the classifier's weight and bias
            ("auto": keep them when their shapes match the model's, else re-initialise;
            "reinit": always re-initialise; "keep": always load, an error if shapes differ).
            Re-initialising leaves the model's own initialisation, made by its loss at build time.
        classifier: dotted name of the classifier module.
        predictor: dotted name of the module stage 2 may change: its buffers and trainable
            parameters may be absent from the checkpoint (a new loss's state, LWS scales), and
            tensors of the stage-1 predictor may be absent from the model.

    Returns:
        whether the classifier was re-initialised.
    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        ValueError: the checkpoint does not match the model (a missing or mis-shaped tensor
            outside the predictor), "keep" with a different logit count, or a re-initialised
            classifier that would not train.
    """
    if classifier_init not in CLASSIFIER_INIT_MODES:
        raise ValueError(f"DECOUPLED.CLASSIFIER_INIT must be one of {CLASSIFIER_INIT_MODES}, got {classifier_init!r}")
    if not path or not PathManager.exists(path):
        raise FileNotFoundError(f"Stage-1 checkpoint not found: {path!r} (set MODEL.WEIGHTS to the stage-1 model)")
    model = _unwrap(model)
    loaded = read_checkpoint_weights(model, path)
    own = model.state_dict()
    own_params = dict(model.named_parameters())

    cls_keys = _classifier_keys(own, classifier)
    if not cls_keys:
        raise ValueError(f"The model has no classifier '{classifier}'")
    same_shape = all(k in loaded and loaded[k].shape == own[k].shape for k in cls_keys)
    if classifier_init == "keep" and not same_shape:
        stage1 = {k: tuple(loaded[k].shape) if k in loaded else None for k in cls_keys}
        stage2 = {k: tuple(own[k].shape) for k in cls_keys}
        raise ValueError(
            f"DECOUPLED.CLASSIFIER_INIT='keep' but the stage-1 classifier {stage1} does not match the model's "
            f"{stage2} (the stage-2 loss needs a different logit count)"
        )
    reinit = classifier_init == "reinit" or not same_shape
    if reinit and not all(own_params[k].requires_grad for k in cls_keys if k in own_params):
        raise ValueError(f"The classifier '{classifier}' is re-initialised but frozen; add it to DECOUPLED.TRAINABLE")

    skip = set(cls_keys) if reinit else set()
    in_predictor = {k for k in set(own) | set(loaded) if k.startswith(predictor + ".")}
    # new in stage 2 (LWS scales, a new loss's state): only under the predictor, never a frozen parameter
    may_be_new = {k for k in in_predictor if k not in own_params or own_params[k].requires_grad}
    missing = [k for k in own if k not in loaded and k not in may_be_new]
    mis_shaped = [
        f"{k}: checkpoint {tuple(loaded[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in loaded and k not in skip and loaded[k].shape != own[k].shape
    ]
    unexpected = [k for k in loaded if k not in own and k not in in_predictor]
    if missing or mis_shaped or unexpected:
        raise ValueError(
            f"Stage-1 checkpoint {path} does not match the model: "
            f"{len(missing)} tensors missing {missing[:5]}, {len(mis_shaped)} with another shape {mis_shaped[:5]}, "
            f"{len(unexpected)} unknown to the model {unexpected[:5]}"
        )
    state = {k: v for k, v in loaded.items() if k in own and k not in skip}
    model.load_state_dict(state, strict=False)
    kept_at_init = sorted(set(own) - set(state))
    logger.info(
        f"Loaded stage-1 checkpoint {path}; classifier {'re-initialised' if reinit else 'loaded'}; "
        f"tensors left at initialisation: {kept_at_init}"
    )
    return reinit


def prepare_stage2_model(model: nn.Module, cfg) -> List[str]:
    """Readies a freshly built model for stage 2 from ``cfg.DECOUPLED``; returns the trainable names.

    Call before building the optimizer.
    """
    d = cfg.DECOUPLED
    if cfg.TEST.PRECISE_BN.ENABLED:
        raise ValueError("TEST.PRECISE_BN.ENABLED would recompute the frozen BatchNorm statistics in stage 2")
    return prepare_stage2(model, trainable=d.TRAINABLE, classifier_init=d.CLASSIFIER_INIT, lws=d.LWS.ENABLED,
                          lws_scale_bias=d.LWS.SCALE_BIAS, disalign=d.DISALIGN.ENABLED,
                          num_classes=cfg.MODEL.ROI_HEADS.NUM_CLASSES)


def prepare_stage2(
    model: nn.Module,
    *,
    trainable: Sequence[str],
    classifier_init: str = "auto",
    lws: bool = False,
    lws_scale_bias: bool = False,
    disalign: bool = False,
    num_classes: Optional[int] = None,
) -> List[str]:
    """:func:`prepare_stage2_model` with plain arguments (``DECOUPLED.TRAINABLE``,
    ``CLASSIFIER_INIT``, ``LWS.ENABLED``, ``LWS.SCALE_BIAS``, ``DISALIGN.ENABLED``; a lazy config's
    ``decoupled``); ``num_classes`` K (the classes of a predictor without lt_det's loss) defaults
    to the predictor's."""
    if lws and disalign:
        raise ValueError("DECOUPLED.LWS and DECOUPLED.DISALIGN both wrap the classifier: enable one")
    if lws or disalign:
        if classifier_init == "reinit":
            raise ValueError(f"{'LWS' if lws else 'DisAlign'} calibrates the stage-1 classifier: "
                             "DECOUPLED.CLASSIFIER_INIT cannot be 'reinit'")
        # lt_det's predictor asks its loss which rows are the classes (BAGS's are not the first
        # K); detectron2's stock predictor has the softmax layout.
        predictor = _unwrap(model).get_submodule(PREDICTOR)
        cls_loss = getattr(predictor, "cls_loss", None)
        if cls_loss is not None:
            class_rows = cls_loss.classifier_rows()
        else:
            class_rows = torch.arange(predictor.num_classes if num_classes is None else num_classes)
        if lws:
            replace_with_lws(_unwrap(model), CLASSIFIER, class_rows=class_rows, scale_bias=lws_scale_bias)
        else:
            replace_with_disalign(_unwrap(model), CLASSIFIER, class_rows=class_rows)
    trainable = freeze_all_but(model, trainable)
    pinned = pin_batchnorm_eval(model)
    _log_trainable(model, trainable)
    if pinned:
        logger.info(f"{len(pinned)} BatchNorm layers kept in eval mode: {', '.join(pinned)}")
    return trainable


def stage1_classifier_init(classifier_init: str, lws: bool, disalign: bool) -> str:
    """The ``classifier_init`` mode of :func:`load_stage1_checkpoint`: "keep" with LWS or DisAlign
    (they calibrate the stage-1 classifier, which must therefore be loaded), else ``classifier_init``."""
    return "keep" if lws or disalign else classifier_init


def load_stage1_weights(model: nn.Module, cfg) -> bool:
    """:func:`load_stage1_checkpoint` of ``cfg.MODEL.WEIGHTS`` with ``cfg.DECOUPLED``'s options."""
    d = cfg.DECOUPLED
    mode = stage1_classifier_init(d.CLASSIFIER_INIT, d.LWS.ENABLED, d.DISALIGN.ENABLED)
    return load_stage1_checkpoint(model, cfg.MODEL.WEIGHTS, classifier_init=mode)

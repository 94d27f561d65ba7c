"""Training and evaluation from a detectron2 LazyConfig: ``train_net.py --config-file x.py``.

The loop is detectron2's LazyConfig recipe (its ``tools/lazyconfig_train_net.py``: ``SimpleTrainer``
or ``AMPTrainer`` with detectron2's hooks). lt_det adds what its YACS :class:`Trainer` adds:

* a check, before anything is built, that the config has every part the loop reads (naming the
  missing one) and, where the box predictor is lt_det's, its loss; when training starts, before
  the model is built, the checks of :mod:`lt_det.engine.config_checks` (the evaluated dataset,
  the stage-1 checkpoint) and the parameters of ``lt_det.lazy.lt_train_loader``'s sampler;
* the training sets' class statistics in their metadata before the model is built (detectron2
  main's federated-loss weights read them from there); the training json parsed once;
* decoupled stage 2 from an optional ``decoupled`` node (the YACS ``DECOUPLED`` keys, lower case):
  ``train.init_checkpoint`` is the stage-1 model, loaded by lt_det's stage-1 loader;
* the crash checkpoint (``model_crash.pth``) and ``metrics_eval.json`` after each evaluation.

The parts of a lazy config (``configs/lazy/`` has complete ones)::

    model                  the detector (``model.roi_heads.box_predictor.cls_loss``: lt_det's loss)
    dataloader.train       e.g. L(lt_det.lazy.lt_train_loader)(..., sampler="RepeatFactorTrainingSampler")
    dataloader.test        detectron2's build_detection_test_loader
    dataloader.evaluator   L(lt_det.lazy.lvis_evaluator)(...)
    optimizer              its ``params.model`` is set to the model here
    lr_multiplier          a fvcore ParamScheduler (detectron2.solver.WarmupParamScheduler)
    train                  output_dir, init_checkpoint, max_iter, amp, ddp, checkpointer, eval_period,
                           log_period, device (detectron2's configs/common/train.py keys), seed
    decoupled (optional)   trainable, classifier_init, lws: {enabled, scale_bias}, and optionally
                           disalign: {enabled} (DisAlign, Zhang et al. 2021)
"""
import inspect
import json
import logging
import os

import torch

import detectron2.engine.defaults as d2_defaults
from detectron2.config import instantiate
from detectron2.engine import AMPTrainer, SimpleTrainer, default_writers, hooks
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager

from ..data.build import check_sampler_params
from ..data.datasets import ensure_class_stats, parse_each_json_once
from ..data.resumable import ResumableTrainLoader
from ..evaluation.backends import DEFAULT_BACKEND
from ..lazy import lt_train_loader
from ..modeling.fast_rcnn import LTFastRCNNOutputLayers
from .checkpoint import SafeCheckpointer
from .config_checks import check_evaluation_config, check_stage1_checkpoint, check_test_datasets
from .decoupled import load_stage1_checkpoint, prepare_stage2, stage1_classifier_init
from .distributed import broadcast_buffers_from_main
from .hooks import ExactResumeHook, FinishedTrainingEvalHook, insert_crash_checkpointer

__all__ = ["REQUIRED_KEYS", "check_lazy_config", "build_lazy_model", "do_test", "do_train"]

logger = logging.getLogger(__name__)

# Every key the loop reads, with what it is.
REQUIRED_KEYS = {
    "model": "the detector (a LazyCall of a meta-architecture)",
    "dataloader.train": "the training data loader (lt_det.lazy.lt_train_loader)",
    "dataloader.test": "the test data loader (detectron2.data.build_detection_test_loader)",
    "dataloader.evaluator": "the evaluator (lt_det.lazy.lvis_evaluator)",
    "optimizer": "the optimizer (its params.model is set to the model)",
    "lr_multiplier": "the learning-rate schedule (detectron2.solver.WarmupParamScheduler)",
    "train.output_dir": "where checkpoints, logs and metrics go",
    "train.init_checkpoint": "weights to start from ('' = none; stage 2: the stage-1 model)",
    "train.max_iter": "the number of iterations",
    "train.amp.enabled": "mixed precision (AMPTrainer)",
    "train.ddp": "DistributedDataParallel options (detectron2's create_ddp_model)",
    "train.checkpointer": "PeriodicCheckpointer options (period, max_to_keep)",
    "train.eval_period": "evaluate every this many iterations (and after training)",
    "train.log_period": "write metrics every this many iterations",
    "train.device": "'cuda' or 'cpu'",
}
DECOUPLED_KEYS = ("trainable", "classifier_init", "lws")


def _get(cfg, dotted: str):
    node = cfg
    for part in dotted.split("."):
        if node is None or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def _target_name(node) -> str:
    target = node.get("_target_") if hasattr(node, "get") else None
    return getattr(target, "__qualname__", str(target))


def check_lazy_config(cfg, path: str = "the lazy config") -> None:
    """Raises ValueError naming each part of :data:`REQUIRED_KEYS` that ``cfg`` lacks, a box
    predictor of lt_det's without its loss, and an incomplete ``decoupled`` node."""
    problems = []
    for key, meaning in REQUIRED_KEYS.items():
        try:
            _get(cfg, key)
        except KeyError:
            problems.append(f"{key} ({meaning})")
    try:
        predictor = _get(cfg, "model.roi_heads.box_predictor")
    except KeyError:
        predictor = None
    if predictor is not None and _target_name(predictor) == LTFastRCNNOutputLayers.__qualname__:
        if "cls_loss" not in predictor:
            problems.append("model.roi_heads.box_predictor.cls_loss (lt_det's box predictor takes its "
                            "classification loss from it: L(lt_det.lazy.lt_loss)(name=..., num_classes=...))")
    if "decoupled" in cfg:
        missing = [k for k in DECOUPLED_KEYS if k not in cfg.decoupled]
        if missing:
            problems.append(f"decoupled.{', decoupled.'.join(missing)} (stage 2's options)")
    evaluator = cfg.get("dataloader", {}).get("evaluator", None)
    if evaluator is not None and "backend" in evaluator:
        check_evaluation_config(evaluator.backend, key="dataloader.evaluator.backend")
    if problems:
        raise ValueError(f"{path} lacks what lt_det's LazyConfig training reads:\n  " + "\n  ".join(problems))


def _decoupled(cfg):
    return cfg.get("decoupled") if "decoupled" in cfg else None


def _disalign(decoupled) -> bool:
    """Whether a ``decoupled`` node asks for DisAlign (an optional key: older configs lack it)."""
    return bool(decoupled.get("disalign", {}).get("enabled", False))


def build_lazy_model(cfg) -> torch.nn.Module:
    """``instantiate(cfg.model)`` on ``cfg.train.device``, readied for stage 2 when ``cfg`` has a
    ``decoupled`` node (before the optimizer is built: it freezes parameters).

    The training sets' class statistics are put into their metadata first."""
    names = cfg.dataloader.train.get("dataset", {}).get("names", ()) if "train" in cfg.dataloader else ()
    for name in [names] if isinstance(names, str) else list(names or ()):
        ensure_class_stats(name)
    model = instantiate(cfg.model)
    model.to(cfg.train.device)
    d = _decoupled(cfg)
    if d is not None:
        prepare_stage2(model, trainable=list(d.trainable), classifier_init=d.classifier_init,
                       lws=d.lws.enabled, lws_scale_bias=d.lws.scale_bias, disalign=_disalign(d))
    return model


def do_test(cfg, model) -> dict:
    """Evaluates ``model`` with ``cfg.dataloader.evaluator`` on ``cfg.dataloader.test``; the main
    process writes the metrics to ``train.output_dir/metrics_eval.json``. Every process evaluates
    the main process's buffers (BatchNorm statistics): those of the model it saves."""
    broadcast_buffers_from_main(model)
    results = inference_on_dataset(model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator))
    if comm.is_main_process():
        print_csv_format(results)
        os.makedirs(cfg.train.output_dir, exist_ok=True)
        with open(os.path.join(cfg.train.output_dir, "metrics_eval.json"), "w") as f:
            json.dump(results, f, indent=2)
    return results


def _check_evaluated_dataset(cfg) -> None:
    """:func:`check_test_datasets` on lt_det's evaluator's dataset, before training."""
    evaluator = cfg.dataloader.evaluator
    if _target_name(evaluator) != "lvis_evaluator":
        return  # another evaluator: its own checks
    train = evaluator.get("train_datasets", ())
    check_test_datasets([evaluator.dataset_name], _get(cfg, "model.roi_heads.num_classes"),
                        [train] if isinstance(train, str) else list(train), evaluator.get("backend", DEFAULT_BACKEND),
                        num_classes_key="model.roi_heads.num_classes")


def _check_train_sampler(cfg) -> None:
    """:func:`check_sampler_params` on ``lt_det.lazy.lt_train_loader``'s arguments (with exact
    resume its sampler is built only when the first batch is drawn); another loader: its own checks."""
    train = cfg.dataloader.train
    if _target_name(train) != "lt_train_loader":
        return
    args = {k: train.get(k, p.default) for k, p in inspect.signature(lt_train_loader).parameters.items()}
    check_sampler_params(args["sampler"], args["repeat_threshold"], exact_resume=args["exact_resume"])


def _stage1_checkpoint_to_load(cfg, resume: bool) -> bool:
    """Whether stage 2 loads its stage-1 checkpoint (it does unless it resumes its own run)."""
    has_checkpoint = PathManager.exists(os.path.join(cfg.train.output_dir, "last_checkpoint"))
    return _decoupled(cfg) is not None and not (resume and has_checkpoint)


def do_train(cfg, resume: bool = False) -> None:
    """Trains ``cfg.model`` for ``cfg.train.max_iter`` iterations (resuming from
    ``train.output_dir``'s last checkpoint with ``resume``), then evaluates it."""
    _check_train_sampler(cfg)
    if _stage1_checkpoint_to_load(cfg, resume):
        check_stage1_checkpoint(cfg.train.init_checkpoint, key="train.init_checkpoint")
    with parse_each_json_once():  # the model's loss and the loader read the same training json
        _check_evaluated_dataset(cfg)
        model = build_lazy_model(cfg)
        train_loader = instantiate(cfg.dataloader.train)
    logger.info(f"Model:\n{model}")
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    # looked up in the module: lt_det's CPU launcher replaces it for gloo processes
    model = d2_defaults.create_ddp_model(model, **cfg.train.ddp)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, train_loader, optimizer)
    checkpointer = SafeCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    main = comm.is_main_process()
    exact = (ExactResumeHook(train_loader, cfg.train.checkpointer.period, cfg.train.output_dir)
             if isinstance(train_loader, ResumableTrainLoader) else None)
    trainer.register_hooks(insert_crash_checkpointer([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if main else None,
        FinishedTrainingEvalHook(hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model))),
        hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter),
                             period=cfg.train.log_period) if main else None,
    ], checkpointer, exact))
    d = _decoupled(cfg)
    if d is not None and not (resume and checkpointer.has_checkpoint()):
        # stage 2 starts from the stage-1 model at iteration 0 (unless resuming its own run)
        mode = stage1_classifier_init(d.classifier_init, d.lws.enabled, _disalign(d))
        load_stage1_checkpoint(model, cfg.train.init_checkpoint, classifier_init=mode)
        start_iter = 0
    else:
        checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=resume)
        start_iter = trainer.iter + 1 if resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)

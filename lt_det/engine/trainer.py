"""``Trainer``: detectron2's DefaultTrainer with lt_det's data mapper, evaluator and hooks."""
import json
import logging
import os
from typing import Optional

from detectron2.data import build_detection_test_loader, get_detection_dataset_dicts
from detectron2.engine import DefaultTrainer, TrainerBase
from detectron2.engine.hooks import EvalHook
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager

from .. import modeling  # noqa: F401  (registers lt_det's ROI heads for build_model)
from ..evaluation import build_lvis_evaluator
from ..data import LTDatasetMapper
from ..data.build import build_lt_train_loader, check_sampler_params
from ..data.datasets import ensure_class_stats, parse_each_json_once
from ..data.image_labels import ImageLabelDatasetMapper
from ..data.resumable import ResumableTrainLoader
from .checkpoint import SafeCheckpointer
from .config_checks import check_evaluation_config, check_stage1_checkpoint, check_test_datasets, warn_if_lt_loss_unused
from .decoupled import load_stage1_weights, prepare_stage2_model
from .distributed import broadcast_buffers_from_main
from .hooks import ExactResumeHook, FinishedTrainingEvalHook, MFSWarmupHook, insert_crash_checkpointer
from .logit_grad_stats import LogitGradStatsHook


class Trainer(DefaultTrainer):
    """Only chooses components; the training loop is detectron2's."""

    def __init__(self, cfg):
        if cfg.DATASETS.TEST:
            check_evaluation_config(cfg.TEST.LVIS_EVAL.BACKEND)
        # detectron2 builds the model before the data loader, and with exact resume the sampler is
        # built only when the first batch is drawn: its parameters are checked here
        d = cfg.DATALOADER
        check_sampler_params(d.SAMPLER_TRAIN, d.REPEAT_THRESHOLD, exact_resume=d.EXACT_RESUME)
        if cfg.DECOUPLED.ENABLED and not PathManager.exists(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")):
            # stage 2 loads the stage-1 model unless it resumes its own run, which needs a checkpoint
            # in OUTPUT_DIR (whether it resumes is known only in resume_or_load, which checks again)
            check_stage1_checkpoint(cfg.MODEL.WEIGHTS)
        # The model (class statistics for its loss) and the data loader (dataset dicts) both read
        # the training json: parse it once.
        with parse_each_json_once():
            # what the evaluation after training needs, checked before it
            check_test_datasets(cfg.DATASETS.TEST, cfg.MODEL.ROI_HEADS.NUM_CLASSES, cfg.DATASETS.TRAIN,
                                cfg.TEST.LVIS_EVAL.BACKEND)
            super().__init__(cfg)

    @classmethod
    def build_model(cls, cfg):
        if cfg.MODEL.ROI_BOX_HEAD.USE_FED_LOSS:
            # detectron2 main's own federated loss reads `class_image_count` from the training
            # set's metadata while the box predictor is built (lt_det's losses read it themselves)
            for name in cfg.DATASETS.TRAIN:
                ensure_class_stats(name)
        model = super().build_model(cfg)
        warn_if_lt_loss_unused(cfg, model)
        if cfg.DECOUPLED.ENABLED:
            prepare_stage2_model(model, cfg)  # freezes parameters: before the optimizer is built
        return model

    @classmethod
    def build_train_loader(cls, cfg):
        # EQL's LVIS image-label option needs each image's verified classes on its instances.
        mapper_cls = ImageLabelDatasetMapper if cfg.MODEL.LT_LOSS.EQL.USE_IMAGE_LABELS else LTDatasetMapper
        return build_lt_train_loader(cfg, mapper=mapper_cls(cfg, is_train=True))

    def resume_or_load(self, resume=True):
        """Stage 2 starts from the stage-1 model (MODEL.WEIGHTS) at iteration 0, unless resuming
        its own run; everything else is detectron2's behaviour."""
        if self.cfg.DECOUPLED.ENABLED and not (resume and self.checkpointer.has_checkpoint()):
            load_stage1_weights(self.model, self.cfg)
        else:
            super().resume_or_load(resume)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(cfg, dataset_name, mapper=LTDatasetMapper(cfg, is_train=False))

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        ensure_class_stats(dataset_name)  # also writes the category id mapping the evaluator reads
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return build_lvis_evaluator(cfg, dataset_name, output_folder)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """Evaluates on cfg.DATASETS.TEST and writes the metrics to OUTPUT_DIR/metrics_eval.json.

        Every process evaluates the main process's buffers (BatchNorm statistics): the metrics are
        those of the model the main process saves."""
        broadcast_buffers_from_main(model)
        results = super().test(cfg, model, evaluators)
        if comm.is_main_process() and cfg.OUTPUT_DIR:
            os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
            with open(os.path.join(cfg.OUTPUT_DIR, "metrics_eval.json"), "w") as f:
                json.dump(results, f, indent=2)
        return results

    # detectron2 0.6's DefaultTrainer checkpoints only the iteration and hook states: the
    # optimizer state (SGD momentum) is lost on resume. detectron2 main stores the inner trainer's
    # state under "_trainer"; we do the same, so checkpoints are interchangeable between the two.
    def state_dict(self):
        ret = super().state_dict()
        ret["_trainer"] = self._trainer.state_dict()
        return ret

    def load_state_dict(self, state_dict):
        """Restores the iteration and hook states (TrainerBase's part, the same in 0.6 and main),
        then the optimizer's, where the checkpoint has it (main's DefaultTrainer would raise a
        KeyError on a checkpoint without it, such as one of detectron2 0.6's)."""
        TrainerBase.load_state_dict(self, state_dict)
        if "_trainer" in state_dict:
            self._trainer.load_state_dict(state_dict["_trainer"])
        else:
            logging.getLogger(__name__).warning("Checkpoint has no optimizer state; the optimizer starts fresh")

    def build_hooks(self):
        # DefaultTrainer.__init__ makes its DetectionCheckpointer just before it calls build_hooks;
        # the hooks and resume_or_load save and load through lt_det's (atomic writes, resume past
        # a corrupt newest checkpoint) instead.
        c = self.checkpointer
        self.checkpointer = SafeCheckpointer(c.model, c.save_dir, save_to_disk=c.save_to_disk, **c.checkpointables)
        loader = self._trainer.data_loader
        exact = (ExactResumeHook(loader, self.cfg.SOLVER.CHECKPOINT_PERIOD, self.cfg.OUTPUT_DIR)
                 if isinstance(loader, ResumableTrainLoader) else None)
        hooks = insert_crash_checkpointer(super().build_hooks(), self.checkpointer, exact)
        # detectron2's EvalHook would evaluate after a failed last iteration: ours does not.
        hooks = [FinishedTrainingEvalHook(h) if isinstance(h, EvalHook) else h for h in hooks]
        if self.cfg.DIAGNOSTICS.LOGIT_GRAD_STATS:
            hooks.insert(-1, LogitGradStatsHook(self.cfg.OUTPUT_DIR))
        warmup = self.mfs_warmup_hook()
        if warmup is not None:
            hooks.insert(0, warmup)  # before_train: before any other hook's, as released
        return hooks

    def mfs_warmup_hook(self) -> Optional[MFSWarmupHook]:
        """LOCE's MFS warm-up pass (MODEL.ROI_HEADS.MFS.WARMUP_IMAGES_PER_CLASS), or None."""
        mfs = self.cfg.MODEL.ROI_HEADS.MFS
        if not (mfs.ENABLED and mfs.WARMUP_IMAGES_PER_CLASS > 0):
            return None
        dicts = get_detection_dataset_dicts(self.cfg.DATASETS.TRAIN,
                                            filter_empty=self.cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
        batch = max(1, self.cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size())
        return MFSWarmupHook(dicts, LTDatasetMapper(self.cfg, is_train=True), mfs.WARMUP_IMAGES_PER_CLASS, batch,
                             self.cfg.DATALOADER.NUM_WORKERS)

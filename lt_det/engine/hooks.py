"""Training hooks lt_det adds to detectron2's defaults."""
import logging
import os
from typing import Dict, List, Optional

import torch

from torch import nn

from detectron2.data import DatasetFromList, MapDataset
from detectron2.engine import HookBase
from detectron2.engine.hooks import EvalHook, LRScheduler
from detectron2.utils import comm
from detectron2.utils.events import EventStorage

from ..data.resumable import ResumableTrainLoader, StreamState, item_seed, seed_all
from ..data.samplers import class_to_image_indices
from ..modeling.feature_memory import warmup_image_indices

logger = logging.getLogger(__name__)

__all__ = ["CrashCheckpointer", "ExactResumeHook", "FinishedTrainingEvalHook", "MFSWarmupHook",
           "insert_crash_checkpointer"]


class CrashCheckpointer(HookBase):
    """Saves a checkpoint when training stops on an exception, so ``--resume`` continues exactly.

    detectron2 only checkpoints every ``SOLVER.CHECKPOINT_PERIOD`` iterations; a crash loses up to
    that much work. ``TrainerBase.train`` runs ``after_train`` in a ``finally`` and increments
    ``iter`` past the last one only on success, so ``iter < max_iter`` here means a crash. This
    hook runs first among the hooks, so "its ``after_step`` ran for ``iter``" means exactly "the
    optimizer took step ``iter``". What is saved depends on that:

    * the failure was before or inside ``run_step`` (data loader, forward, backward, detectron2's
      non-finite-loss check, ``optimizer.step``): the weights are those after iteration
      ``iter - 1``, saved as ``model_crash`` with that iteration, and the resumed run repeats
      ``iter``;
    * it was in a hook after the step (a periodic evaluation running out of memory, a full disk
      under a writer, or ``LRScheduler`` itself): the weights took step ``iter``. If the LR
      scheduler has not taken its step ``iter`` yet (the scheduler's ``last_epoch`` counts its
      steps: ``iter + 1`` once step ``iter`` is done), it is taken here. The state is saved as
      done and the resumed run starts at ``iter + 1`` with the LR it would have had. When
      ``iter`` is the last iteration the model is complete: it is saved as ``model_final``
      (which ``--resume`` then evaluates without training).

    Register it with :func:`insert_crash_checkpointer`.
    """

    def __init__(self, checkpointer, lr_scheduler_hook: Optional[LRScheduler] = None):
        self.checkpointer = checkpointer
        self._lr_hook = lr_scheduler_hook
        self._stepped: Optional[int] = None  # the last iteration whose optimizer step finished

    def before_train(self):
        self._stepped = None

    def after_step(self):
        self._stepped = self.trainer.iter

    def after_train(self):
        trainer = self.trainer
        if trainer.iter >= trainer.max_iter or trainer.iter < trainer.start_iter:
            return
        if self._stepped == trainer.iter:
            self._finish_lr_step(trainer.iter)
            last = trainer.iter == trainer.max_iter - 1
            name = "model_final" if last else "model_crash"
            logger.warning(f"Training stopped in a hook after the step of iteration {trainer.iter}; saving "
                           f"{name}.pth with that iteration done")
        else:
            if trainer.iter == trainer.start_iter:
                return  # nothing done in this run: the checkpoint it started from is still the latest
            name = "model_crash"
            logger.warning(f"Training stopped at iteration {trainer.iter}; saving model_crash.pth to resume from")
            # The trainer's own state (saved inside the checkpoint) must also say "iter - 1 done":
            # resume_or_load restarts at the saved trainer iteration + 1.
            trainer.iter -= 1
        self.checkpointer.save(name, iteration=trainer.iter)

    def _finish_lr_step(self, iteration: int) -> None:
        if self._lr_hook is None:
            return
        scheduler = self._lr_hook.scheduler
        if scheduler.last_epoch == iteration:  # the optimizer stepped, the LR hook failed before stepping
            logger.warning(f"The LR scheduler had not taken its step of iteration {iteration}: taking it now")
            scheduler.step()


def insert_crash_checkpointer(hooks: List[Optional[HookBase]], checkpointer,
                              exact_resume: Optional["ExactResumeHook"] = None) -> List[Optional[HookBase]]:
    """``hooks`` with a :class:`CrashCheckpointer` first (its ``after_step`` then runs as soon as
    the optimizer's step is done, before any hook that can fail), told about detectron2's
    ``LRScheduler`` hook if there is one; with ``exact_resume`` right after it (its state after an
    iteration, taken before anything else can fail, is then saved with exactly the iterations the
    crash checkpointer counts as done)."""
    lr_hook = next((h for h in hooks if isinstance(h, LRScheduler)), None)
    added = [CrashCheckpointer(checkpointer, lr_hook)] + ([exact_resume] if exact_resume is not None else [])
    return added + list(hooks)


class FinishedTrainingEvalHook(HookBase):
    """Runs detectron2's ``EvalHook``, except that a run which failed evaluates nothing at its end.

    detectron2's hook evaluates in ``after_train`` whenever ``iter + 1 >= max_iter``, which is
    also true when the last iteration raised (before its step: the model is not the final one);
    its metrics would then describe a model that no checkpoint holds. ``TrainerBase.train`` moves
    ``iter`` past the last iteration only when every iteration finished, so that is the test
    here. The resumed run (``--resume``) trains what is left and evaluates.
    """

    def __init__(self, eval_hook: EvalHook):
        self.eval_hook = eval_hook  # the periodic evaluations are its own

    def before_train(self):
        self.eval_hook.trainer = self.trainer
        self.eval_hook.before_train()

    def after_step(self):
        self.eval_hook.after_step()

    def after_train(self):
        if self.trainer.iter < self.trainer.max_iter:
            logger.warning(f"Training stopped at iteration {self.trainer.iter}: no final evaluation")
            return
        self.eval_hook.after_train()


class ExactResumeHook(HookBase):
    """Seeds each iteration and keeps the data stream's state in the checkpoints.

    Before iteration i: torch, numpy and Python random seeded from (seed, rank, i). After it: the
    state of the stream is what a checkpoint of iteration i records. With several processes, the
    states of all of them are gathered at the iterations where ``PeriodicCheckpointer`` saves
    (``(i + 1) % checkpoint_period == 0`` and the last); a crash checkpoint (no collective can run
    then) holds the main process's, and each other process writes its own next to it
    (``stream_state_rank{r}.pth``).

    Register it with :func:`insert_crash_checkpointer` (before the checkpointing hooks).
    """

    def __init__(self, loader: ResumableTrainLoader, checkpoint_period: int, output_dir: str):
        self.loader = loader
        self._period = checkpoint_period
        self._output_dir = output_dir
        self._snapshot: Optional[dict] = None  # the state after the last finished iteration
        self._all_ranks: Optional[List[dict]] = None  # gathered at the last checkpoint iteration

    def before_step(self):
        seed_all(item_seed(self.loader.seed, comm.get_rank(), self.trainer.iter, 1))  # 4 numbers: not an item's

    def after_step(self):
        self._snapshot = {"iteration": self.trainer.iter, "state": self.loader.state.to_dict()}
        next_iter = self.trainer.iter + 1
        if comm.get_world_size() > 1 and (next_iter % self._period == 0 or next_iter == self.trainer.max_iter):
            self._all_ranks = comm.all_gather(self._snapshot)

    def after_train(self):
        failed = self.trainer.iter < self.trainer.max_iter
        if failed and comm.get_world_size() > 1 and not comm.is_main_process() and self._snapshot is not None:
            path = os.path.join(self._output_dir, f"stream_state_rank{comm.get_rank()}.pth")
            torch.save(self._snapshot, path + ".tmp")
            os.replace(path + ".tmp", path)

    def state_dict(self) -> dict:
        if self._snapshot is None:
            return {}
        ranks = self._all_ranks
        if ranks is None or ranks[0]["iteration"] != self._snapshot["iteration"]:
            ranks = [self._snapshot] + [None] * (comm.get_world_size() - 1)  # the others' are in files
        return {"seed": self.loader.seed, "world_size": comm.get_world_size(), "ranks": ranks}

    def load_state_dict(self, state: Dict) -> None:
        if not state:
            return
        rank, world = comm.get_rank(), comm.get_world_size()
        if state["world_size"] != world:
            logger.warning(f"The checkpoint's data stream is of {state['world_size']} processes, this run has "
                           f"{world}: the stream restarts (resume is not exact)")
            return
        iteration = state["ranks"][0]["iteration"]
        mine = state["ranks"][rank]
        if mine is None:
            path = os.path.join(self._output_dir, f"stream_state_rank{rank}.pth")
            mine = torch.load(path, weights_only=False) if os.path.exists(path) else None
            if mine is None or mine["iteration"] != iteration:
                logger.warning(f"No data stream state of process {rank} at iteration {iteration}: its stream "
                               "restarts (resume is not exact)")
                return
        self.loader.seed = state["seed"]
        self.loader.state = StreamState.from_dict(mine["state"])
        self._snapshot = mine
        logger.info(f"Data stream resumed at position {self.loader.state.next_position} "
                    f"({len(self.loader.state.consumed_after)} later positions already consumed)")


class MFSWarmupHook(HookBase):
    """LOCE's MFS warm-up (released ``InitializerHook``): before training, the training forward of
    the model, without a step, over ``per_class`` images of every class (this process's share,
    :func:`lt_det.modeling.feature_memory.warmup_image_indices`), which fills the feature memory
    and warms LOCE's mean scores. Losses are discarded; BatchNorm runs in eval mode (the released
    hook puts the model in eval mode) and the step's statistics go to a scratch EventStorage, so
    neither the weights nor the logged metrics change. It runs at every start: the memory is not
    in checkpoints (as released)."""

    def __init__(self, dataset_dicts: List[dict], mapper, per_class: int, batch_size: int, num_workers: int = 0):
        indices = warmup_image_indices(class_to_image_indices(dataset_dicts), per_class, comm.get_rank(),
                                       comm.get_world_size())
        dataset = MapDataset(DatasetFromList([dataset_dicts[i] for i in indices], copy=False), mapper)
        # every process runs the same number of batches (its share has the same length), so the
        # LOCE statistic's all-gather stays in step
        self.loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                                                  collate_fn=lambda batch: batch)
        self.num_images = len(indices)

    def before_train(self):
        model = self.trainer.model
        batch_norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)  # detectron2's BN / SyncBN
        norms = [m for m in model.modules() if isinstance(m, batch_norms) and m.training]
        for m in norms:
            m.eval()
        logger.info(f"MFS warm-up: the training forward over {self.num_images} images ({len(self.loader)} batches)")
        try:
            with torch.no_grad(), EventStorage(self.trainer.iter):
                for batch in self.loader:
                    model(batch)
        finally:
            for m in norms:
                m.train()

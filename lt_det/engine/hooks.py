"""Training hooks lt_det adds to detectron2's defaults."""
import logging
from typing import List, Optional

from detectron2.engine import HookBase
from detectron2.engine.hooks import EvalHook, LRScheduler

logger = logging.getLogger(__name__)

__all__ = ["CrashCheckpointer", "FinishedTrainingEvalHook", "insert_crash_checkpointer"]


class CrashCheckpointer(HookBase):
    """Saves a checkpoint when training stops on an exception, so ``--resume`` continues exactly.

    detectron2 only checkpoints every ``SOLVER.CHECKPOINT_PERIOD`` iterations; a crash loses up to
    that much work. ``TrainerBase.train`` runs ``after_train`` in a ``finally`` and increments
    ``iter`` past the last one only on success, so ``iter < max_iter`` here means a crash. What is
    saved depends on where iteration ``iter`` failed:

    * before or inside ``run_step`` (data loader, forward, backward, detectron2's non-finite-loss
      check, ``optimizer.step``): this hook's ``after_step`` did not run for ``iter``. The state
      is that of iteration ``iter - 1``, saved as ``model_crash`` with that iteration, and the
      resumed run repeats ``iter``;
    * in a hook after the step (a periodic evaluation running out of memory, a full disk under a
      writer): the optimizer and the LR scheduler (whose hook runs before this one) have taken
      step ``iter``, so it is saved as done and the resumed run starts at ``iter + 1``, with the
      LR it would have had. When ``iter`` is the last iteration the model is complete: it is saved
      as ``model_final`` (which ``--resume`` then evaluates without training).

    Register it right after detectron2's ``LRScheduler`` hook (:func:`insert_crash_checkpointer`).
    """

    def __init__(self, checkpointer):
        self.checkpointer = checkpointer
        self._completed: Optional[int] = None  # the last iteration whose step (and LR step) finished

    def before_train(self):
        self._completed = None

    def after_step(self):
        self._completed = self.trainer.iter

    def after_train(self):
        trainer = self.trainer
        if trainer.iter >= trainer.max_iter or trainer.iter < trainer.start_iter:
            return
        if self._completed == trainer.iter:
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


def insert_crash_checkpointer(hooks: List[Optional[HookBase]], checkpointer) -> List[Optional[HookBase]]:
    """``hooks`` with a :class:`CrashCheckpointer` right after detectron2's ``LRScheduler`` hook
    (so "its after_step ran" means "the step and the LR step are done"), or first if there is none."""
    position = next((i + 1 for i, h in enumerate(hooks) if isinstance(h, LRScheduler)), 0)
    return hooks[:position] + [CrashCheckpointer(checkpointer)] + hooks[position:]


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

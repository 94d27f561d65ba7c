"""Training hooks lt_det adds to detectron2's defaults."""
import logging

from detectron2.engine import HookBase

logger = logging.getLogger(__name__)


class CrashCheckpointer(HookBase):
    """Saves ``model_crash.pth`` when training stops on an exception, so ``--resume`` continues.

    detectron2 only checkpoints every ``SOLVER.CHECKPOINT_PERIOD`` iterations; a crash loses up to
    that much work. ``TrainerBase.train`` runs ``after_train`` in a ``finally`` and increments
    ``iter`` past the last one only on success, so ``iter < max_iter`` here means a crash. The
    failing iteration never reached ``optimizer.step()`` in the common cases (an exception in the
    data loader, in the forward pass, or detectron2's non-finite-loss check, which runs before the
    step), so the state saved is that of iteration ``iter - 1`` and resuming re-runs ``iter``.
    """

    def __init__(self, checkpointer):
        self.checkpointer = checkpointer

    def after_train(self):
        if self.trainer.iter >= self.trainer.max_iter or self.trainer.iter <= self.trainer.start_iter:
            return
        logger.warning(f"Training stopped at iteration {self.trainer.iter}; saving model_crash.pth to resume from")
        # The trainer's own state (saved inside the checkpoint) must also say "iter - 1 done":
        # resume_or_load restarts at the saved trainer iteration + 1.
        self.trainer.iter -= 1
        self.checkpointer.save("model_crash", iteration=self.trainer.iter)

"""DATALOADER.EXACT_RESUME: after a crash or from a periodic checkpoint (what kill -9 leaves),
``--resume`` gives every later iteration the loss of the uninterrupted run."""
import os

import pytest
import torch

from detectron2.engine import HookBase
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng

from lt_det.engine import Trainer
from fault_hooks import FailAfterStep, FailAt
from tiny_dataset import QUICK_CONFIG, TINY_NUM_CLASSES


class _RecordLosses(HookBase):
    def __init__(self):
        self.losses = {}

    def after_step(self):
        if comm.is_main_process():  # detectron2 writes the (process-averaged) losses there only
            self.losses[self.trainer.iter] = self.trainer.storage.history("total_loss").latest()


def _run(cfg, *, resume=False, fail_at=None, fail_after=None):
    """The run's losses by iteration; ``fail_at`` / ``fail_after``: an exception before / after the
    step of that iteration (that iteration's loss is recorded, the exception follows)."""
    if cfg.SEED >= 0:
        seed_all_rng(cfg.SEED)  # the model's initial weights, as train_net.py's default_setup seeds them
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=resume)
    record = _RecordLosses()
    faults = [FailAt(fail_at)] if fail_at is not None else [FailAfterStep(fail_after)] if fail_after is not None else []
    trainer.register_hooks([record] + faults)
    if not faults:
        trainer.train()
    else:
        with pytest.raises(RuntimeError, match="simulated crash"):
            trainer.train()
    return record.losses


MAX_ITER = 6


def _cfg(quick_cfg, tmp_path, name, sampler, exact=True, seed=-1):
    # SEED -1: a random seed per run, so the checkpoint must bring the stream's seed back.
    # A batch of 3 with aspect-ratio grouping leaves images waiting in the buckets.
    return quick_cfg("DATALOADER.EXACT_RESUME", exact, "DATALOADER.SAMPLER_TRAIN", sampler, "SEED", seed,
                     "SOLVER.MAX_ITER", MAX_ITER, "SOLVER.IMS_PER_BATCH", 3, "SOLVER.CHECKPOINT_PERIOD", 2,
                     "DATASETS.TEST", "()", "OUTPUT_DIR", str(tmp_path / name))


@pytest.mark.parametrize("sampler", ["TrainingSampler", "RepeatFactorTrainingSampler", "ClassAwareSampler"])
def test_resumed_losses_equal_the_uninterrupted_run(quick_cfg, tmp_path, sampler):
    cfg = _cfg(quick_cfg, tmp_path, "run", sampler)
    uninterrupted = _run(cfg)
    assert len(set(uninterrupted.values())) == MAX_ITER

    # kill -9 after the periodic checkpoint of iteration 3 (its state is what is on disk then)
    with open(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint"), "w") as f:
        f.write("model_0000003.pth")
    assert _run(cfg, resume=True) == {i: uninterrupted[i] for i in (4, 5)}

    # an exception before the step of iteration 3: the crash checkpoint holds iteration 2. Two runs
    # are compared here: with one seed (SEED -1 draws one per run)
    reference = _run(_cfg(quick_cfg, tmp_path, "reference", sampler, seed=11))
    crashed = _cfg(quick_cfg, tmp_path, "crash", sampler, seed=11)
    assert _run(crashed, fail_at=3) == {i: reference[i] for i in range(3)}
    assert _run(crashed, resume=True) == {i: reference[i] for i in range(3, MAX_ITER)}


def test_a_crash_after_the_step_resumes_with_the_uninterrupted_losses(quick_cfg, tmp_path):
    """An exception in a hook after the step of iteration 3 (a periodic evaluation out of memory):
    iteration 3 is saved as done, and the resumed run's iterations 4 and 5 have the losses of the
    uninterrupted run with the same seed."""
    reference = _run(_cfg(quick_cfg, tmp_path, "reference", "RepeatFactorTrainingSampler", seed=11))
    crashed = _cfg(quick_cfg, tmp_path, "crash", "RepeatFactorTrainingSampler", seed=11)
    assert _run(crashed, fail_after=3) == {i: reference[i] for i in range(4)}
    assert _run(crashed, resume=True) == {i: reference[i] for i in range(4, MAX_ITER)}


def test_without_exact_resume_the_resumed_run_differs(quick_cfg, tmp_path):
    """detectron2's loader restarts its stream: the test above can tell."""
    cfg = _cfg(quick_cfg, tmp_path, "d2", "TrainingSampler", exact=False, seed=7)
    uninterrupted = _run(cfg)
    with open(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint"), "w") as f:
        f.write("model_0000003.pth")
    assert _run(cfg, resume=True) != {i: uninterrupted[i] for i in (4, 5)}


def _two_process_worker(opts, resume, losses_file, fail_at=None):
    """One process of a 2-process (gloo) run of the instant-test config; rank 0 saves the losses
    (detectron2 averages them over the processes into the main process's storage)."""
    from detectron2.config import get_cfg

    from lt_det.builtin import setup_environment
    from lt_det.config import add_lt_det_config

    setup_environment()  # a new process: registers the tiny set from DETECTRON2_DATASETS
    cfg = get_cfg()
    add_lt_det_config(cfg)
    cfg.merge_from_file(QUICK_CONFIG)
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.ROI_HEADS.NUM_CLASSES", TINY_NUM_CLASSES, *opts])
    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=resume)
    record = _RecordLosses()
    trainer.register_hooks([record] + ([FailAt(fail_at)] if fail_at is not None else []))
    try:
        trainer.train()
    finally:
        if comm.is_main_process():
            torch.save(record.losses, losses_file)


def test_two_process_resume_equals_the_uninterrupted_run(tiny_dataset_root, tmp_path):
    """After a crash (both processes raise in iteration 3) each process's stream state is in its
    file next to the crash checkpoint."""
    from lt_det.engine.launch import launch

    def opts(name):
        return ["DATALOADER.EXACT_RESUME", True, "DATALOADER.SAMPLER_TRAIN", "RepeatFactorTrainingSampler",
                "SEED", 5, "SOLVER.MAX_ITER", MAX_ITER, "SOLVER.IMS_PER_BATCH", 6, "SOLVER.CHECKPOINT_PERIOD", 2,
                "DATASETS.TEST", "()", "OUTPUT_DIR", str(tmp_path / name)]

    def run(name, resume, fail_at=None):
        launch(_two_process_worker, 2, dist_url="auto", args=(opts(name), resume, str(tmp_path / "losses.pth"),
                                                                fail_at))
        return torch.load(tmp_path / "losses.pth")

    uninterrupted = run("ddp", resume=False)
    assert len(uninterrupted) == MAX_ITER
    # (resuming from its periodic checkpoints: tests/reliability, after a SIGKILL of the whole run)
    with pytest.raises(Exception, match="simulated crash"):
        run("crash", resume=False, fail_at=3)
    assert (tmp_path / "crash" / "stream_state_rank1.pth").exists()
    assert run("crash", resume=True) == {i: uninterrupted[i] for i in range(3, MAX_ITER)}

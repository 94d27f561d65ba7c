"""Fault injection: a real ``kill -9`` of train_net.py, then ``--resume``.

With ``DATALOADER.EXACT_RESUME`` the resumed run ends with exactly the weights of an uninterrupted
run: the same batches, augmentations and random draws from the checkpoint on (equal weights after
the last iteration mean every step in between was equal).

The other faults are tested next to the code they exercise:

* exceptions before the step, after it (in a hook) and in the last iteration, resumed with the LR
  schedule of an uninterrupted run, no metrics for an unfinished model: ``tests/engine/test_training.py``;
* resumed loss curves equal an uninterrupted run's, 1 and 2 processes, after a crash and from a
  periodic checkpoint: ``tests/engine/test_exact_resume.py``, ``tests/data/test_resumable.py``;
* interrupted checkpoint writes, corrupt and truncated checkpoints: ``tests/engine/test_checkpoint.py``;
* checks before training (backend, test datasets, RFS threshold): ``tests/engine/test_fail_fast.py``,
  ``tests/engine/test_trainer_build.py``, ``tests/data/test_lt_train_loader.py``;
* bad annotations: ``tests/data/test_annotation_checks.py``; bad result records on every backend,
  and a failed evaluation that keeps its detections: ``tests/evaluation/test_results_checks.py``,
  ``tests/evaluation/test_lvis_evaluator.py``;
* multi-process evaluation of the saved model: ``tests/engine/test_distributed_eval.py``,
  ``tests/engine/test_launch.py``.
"""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tiny_dataset import QUICK_CONFIG, REPO, TINY_NUM_CLASSES

MAX_ITER = 8


def _command(out_dir, *extra):
    return [sys.executable, os.path.join(REPO, "train_net.py"), "--config-file", QUICK_CONFIG, *extra,
            "MODEL.ROI_HEADS.NUM_CLASSES", str(TINY_NUM_CLASSES), "DATALOADER.EXACT_RESUME", "True",
            "DATALOADER.SAMPLER_TRAIN", "RepeatFactorTrainingSampler", "SEED", "3", "SOLVER.MAX_ITER",
            str(MAX_ITER), "SOLVER.IMS_PER_BATCH", "4", "SOLVER.CHECKPOINT_PERIOD", "2", "DATASETS.TEST", "()",
            "OUTPUT_DIR", str(out_dir)]


def _final_weights(out_dir):
    return torch.load(os.path.join(out_dir, "model_final.pth"), map_location="cpu", weights_only=False)["model"]


@pytest.mark.parametrize("processes", [(), ("--num-gpus", "2", "--dist-url", "auto")], ids=["1", "2"])
def test_kill_9_then_resume_ends_with_the_uninterrupted_weights(tiny_dataset_root, tmp_path, processes):
    """SIGKILL to the whole job (with 2 processes: the launcher and its gloo processes) after the
    periodic checkpoint of iteration 3, then ``--resume`` with as many processes: each process's
    stream state comes from the checkpoint."""
    subprocess.run(_command(tmp_path / "uninterrupted", *processes), cwd=REPO, check=True, capture_output=True,
                   timeout=600)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_command(killed, *processes), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not (killed / "model_0000003.pth").exists():
            assert proc.poll() is None, "training ended before it could be killed"
            assert time.time() < deadline
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert not (killed / "model_final.pth").exists()
    subprocess.run(_command(killed, "--resume", *processes), cwd=REPO, check=True, capture_output=True, timeout=600)

    expected, resumed = _final_weights(tmp_path / "uninterrupted"), _final_weights(killed)
    assert expected.keys() == resumed.keys()
    for name, value in expected.items():
        assert torch.equal(resumed[name], value), name

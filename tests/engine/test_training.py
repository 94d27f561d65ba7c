"""End to end on the tiny synthetic set: train + eval, resume, crash checkpoint, bad input."""
import json
import os

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import hooks as d2_hooks

from lt_det.engine import Trainer
from fault_hooks import FailAfterStep, FailAt

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")


def test_train_then_eval_prints_lvis_metrics(train_net, tmp_path):
    """train_net.py trains a few iterations, evaluates, and writes config + metrics."""
    out = tmp_path / "run"
    log = train_net("--config-file", "configs/quick_schedules/mask_rcnn_R_18_FPN_synthetic_lt_instant_test.yaml",
                    "MODEL.ROI_HEADS.NUM_CLASSES", "12", "OUTPUT_DIR", str(out))
    assert "copypaste: AP,AP50,AP75,APs,APm,APl,APr,APc,APf" in log
    results = json.loads((out / "metrics_eval.json").read_text())
    for task in ("bbox", "segm"):
        assert set(METRICS) <= set(results[task])
    assert (out / "config.yaml").exists() and (out / "metrics.json").exists()
    assert (out / "model_final.pth").exists()

    # --eval-only on the trained weights gives the same numbers.
    eval_out = tmp_path / "eval"
    train_net("--config-file", "configs/quick_schedules/mask_rcnn_R_18_FPN_synthetic_lt_instant_test.yaml",
              "--eval-only", "MODEL.WEIGHTS", str(out / "model_final.pth"),
              "MODEL.ROI_HEADS.NUM_CLASSES", "12", "OUTPUT_DIR", str(eval_out))
    assert json.loads((eval_out / "metrics_eval.json").read_text()) == results


def _momentum_buffers(optimizer_state):
    return [s["momentum_buffer"] for s in optimizer_state["state"].values()]


def test_resume_continues_at_saved_iteration_with_saved_optimizer(quick_cfg):
    cfg = quick_cfg("SOLVER.MAX_ITER", 4, "SOLVER.CHECKPOINT_PERIOD", 2, "TEST.EVAL_PERIOD", 0,
                    "DATASETS.TEST", "()")
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    saved = torch.load(os.path.join(cfg.OUTPUT_DIR, "model_0000001.pth"), map_location="cpu", weights_only=False)
    assert saved["iteration"] == 1
    # Point "last checkpoint" at the mid-training one, as if training had stopped there.
    with open(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint"), "w") as f:
        f.write("model_0000001.pth")

    resumed = Trainer(cfg)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 2
    state = resumed.optimizer.state_dict()
    assert len(_momentum_buffers(state)) == len(_momentum_buffers(saved["trainer"]["_trainer"]["optimizer"])) > 0
    for a, b in zip(_momentum_buffers(state), _momentum_buffers(saved["trainer"]["_trainer"]["optimizer"])):
        assert torch.equal(a, b)
    for name, value in resumed.model.state_dict().items():
        assert torch.equal(value, saved["model"][name]), name
    assert resumed.scheduler.last_epoch == saved["trainer"]["hooks"]["LRScheduler"]["last_epoch"] == 2


def test_resume_from_a_checkpoint_without_optimizer_state(quick_cfg, caplog):
    """A checkpoint of detectron2 0.6's own trainer holds no "_trainer" (optimizer) state: the run
    resumes at its iteration with a fresh optimizer, on 0.6 and on main."""
    cfg = quick_cfg("SOLVER.MAX_ITER", 6, "DATASETS.TEST", "()")
    trainer = Trainer(cfg)
    trainer.iter = 3
    trainer.checkpointer.save("model_0000003")
    path = os.path.join(cfg.OUTPUT_DIR, "model_0000003.pth")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    del saved["trainer"]["_trainer"]
    torch.save(saved, path)

    resumed = Trainer(cfg)
    with caplog.at_level("WARNING", logger="lt_det.engine.trainer"):
        resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 4
    assert resumed.optimizer.state_dict()["state"] == {}
    assert "Checkpoint has no optimizer state; the optimizer starts fresh" in caplog.text


def test_crash_leaves_a_checkpoint_that_resumes(quick_cfg):
    cfg = quick_cfg("SOLVER.MAX_ITER", 6, "SOLVER.CHECKPOINT_PERIOD", 100, "DATASETS.TEST", "()")
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.register_hooks([FailAt(3)])
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer.train()
    crash = torch.load(os.path.join(cfg.OUTPUT_DIR, "model_crash.pth"), map_location="cpu", weights_only=False)
    assert crash["iteration"] == 2  # iterations 0-2 completed
    resumed = Trainer(cfg)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 3
    resumed.train()
    assert os.path.exists(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))


def _fail_in_lr_hook_before_its_step(monkeypatch, iteration):
    """detectron2's LRScheduler hook raises at ``iteration`` before stepping its scheduler (as
    its ``put_scalar`` could): the optimizer has stepped, the LR scheduler has not."""
    step_lr = d2_hooks.LRScheduler.after_step

    def after_step(hook):
        if hook.trainer.iter == iteration:
            raise RuntimeError("simulated crash after the step")
        step_lr(hook)

    monkeypatch.setattr(d2_hooks.LRScheduler, "after_step", after_step)


@pytest.mark.parametrize("where", ["later_hook", "lr_hook"])
@pytest.mark.parametrize("fail_at", [2, 3])  # mid-run, and the last iteration
def test_crash_after_the_step_resumes_without_repeating_it(quick_cfg, monkeypatch, fail_at, where):
    """The resumed run continues at the next iteration with the scheduler where an uninterrupted
    run has it, and ends with model_final.pth (no crash loop: the scheduler never overshoots), also
    when the LR hook itself failed before its scheduler's step."""
    cfg = quick_cfg("SOLVER.MAX_ITER", 4, "SOLVER.CHECKPOINT_PERIOD", 100, "SOLVER.STEPS", "(2,)",
                    "SOLVER.WARMUP_ITERS", 2, "DATASETS.TEST", "()")
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    if where == "later_hook":
        trainer.register_hooks([FailAfterStep(fail_at)])  # after the defaults, as detectron2's writers are
    else:
        _fail_in_lr_hook_before_its_step(monkeypatch, fail_at)
    with pytest.raises(RuntimeError, match="simulated crash after the step"):
        trainer.train()
    monkeypatch.undo()
    name = "model_final.pth" if fail_at == 3 else "model_crash.pth"
    saved = torch.load(os.path.join(cfg.OUTPUT_DIR, name), map_location="cpu", weights_only=False)
    assert saved["iteration"] == fail_at  # that iteration's step is done
    assert saved["trainer"]["hooks"]["LRScheduler"]["last_epoch"] == fail_at + 1
    resumed = Trainer(cfg)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == fail_at + 1
    resumed.train()
    final = torch.load(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"), map_location="cpu", weights_only=False)
    assert final["iteration"] == 3
    assert final["trainer"]["hooks"]["LRScheduler"]["last_epoch"] == 4  # = an uninterrupted 4-iteration run's
    assert resumed.scheduler.last_epoch == 4


def test_unreadable_image_error_names_the_file(quick_cfg, tiny_dataset_root, tmp_path):
    import shutil

    from lt_det.data import register_lvis_format

    root = tmp_path / "broken"
    shutil.copytree(tiny_dataset_root / "synthetic_lt", root)
    for png in (root / "train").iterdir():
        png.write_bytes(b"not a png")
    register_lvis_format("broken_train", str(root / "synthetic_lt_train.json"), str(root))
    cfg = quick_cfg("DATASETS.TRAIN", "('broken_train',)", "DATASETS.TEST", "()")
    trainer = Trainer(cfg)
    with pytest.raises(RuntimeError, match=r"Failed to load or transform image '.*broken/train/\d+\.png'"):
        trainer.train()


def test_unregistered_dataset_is_a_clear_error(quick_cfg):
    cfg = quick_cfg("DATASETS.TRAIN", "('no_such_dataset',)")
    with pytest.raises(KeyError, match="no_such_dataset"):
        Trainer(cfg)


def test_checkpoint_loads_into_a_fresh_model(quick_cfg):
    cfg = quick_cfg("SOLVER.MAX_ITER", 1, "DATASETS.TEST", "()")
    trainer = Trainer(cfg)
    trainer.train()
    model = Trainer.build_model(cfg)
    DetectionCheckpointer(model).load(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))
    for name, value in model.state_dict().items():
        assert torch.equal(value, trainer.model.state_dict()[name]), name


def test_eql_with_image_labels_trains_through_the_trainer(quick_cfg):
    """The Trainer routes LVIS image-level labels to the head when EQL asks for them."""
    cfg = quick_cfg("MODEL.LT_LOSS.NAME", "eql", "MODEL.LT_LOSS.EQL.USE_IMAGE_LABELS", True,
                    "SOLVER.MAX_ITER", 2, "DATASETS.TEST", "()")
    trainer = Trainer(cfg)
    trainer.train()
    assert trainer.iter == 2


def test_fixed_ap_mode_evaluates_through_the_trainer(quick_cfg):
    """With Fixed AP on, the predictor keeps per-class top-k with no per-image cap and the
    evaluation reports Fixed AP next to standard AP."""
    cfg = quick_cfg("TEST.LVIS_EVAL.FIXED_AP.ENABLED", True, "TEST.LVIS_EVAL.FIXED_AP.TOPK_PER_CLASS_PER_IMAGE", 5,
                    "TEST.DETECTIONS_PER_IMAGE", 10, "MODEL.MASK_ON", False)
    model = Trainer.build_model(cfg)
    assert model.roi_heads.box_predictor.fixed_ap_topk_per_class == 5
    model.eval()
    image = next(iter(Trainer.build_test_loader(cfg, cfg.DATASETS.TEST[0])))
    with torch.no_grad():
        classes = model(image)[0]["instances"].pred_classes
    # An untrained model scores every class above 1e-4: 12 classes x 5 exceeds the cap of 10.
    assert len(classes) > cfg.TEST.DETECTIONS_PER_IMAGE
    assert torch.bincount(classes).max() <= 5
    results = Trainer.test(cfg, model)
    assert set(METRICS) <= set(results["bbox_fixed_ap"]) and set(METRICS) <= set(results["bbox"])


def test_unknown_evaluation_backend_fails_before_training(quick_cfg, monkeypatch):
    """Not after a whole training and inference: the trainer refuses to start."""
    from detectron2.engine import DefaultTrainer

    built = []
    monkeypatch.setattr(DefaultTrainer, "build_model", classmethod(lambda cls, cfg: built.append(cfg)))
    with pytest.raises(KeyError, match=r"TEST.LVIS_EVAL.BACKEND: Unknown LVIS evaluation backend 'lvisapi'; "
                                       r"available: \['faster_coco_eval', 'hotcoco', 'lvis'\]"):
        Trainer(quick_cfg("TEST.LVIS_EVAL.BACKEND", "lvisapi"))
    assert built == []  # refused before anything was built


@pytest.mark.parametrize("hook", [FailAt, FailAfterStep])
def test_a_run_that_fails_in_its_last_iteration_writes_no_metrics(quick_cfg, hook):
    """detectron2's EvalHook would evaluate the unfinished model after a crash in the last
    iteration; lt_det's evaluates only a finished run: here the resumed one."""
    cfg = quick_cfg("SOLVER.MAX_ITER", 3, "SOLVER.CHECKPOINT_PERIOD", 100, "TEST.EVAL_PERIOD", 0)
    metrics = os.path.join(cfg.OUTPUT_DIR, "metrics_eval.json")
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.register_hooks([hook(2)])
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer.train()
    assert not os.path.exists(metrics)
    resumed = Trainer(cfg)
    resumed.resume_or_load(resume=True)
    resumed.train()
    with open(metrics) as f:
        assert "APr" in json.load(f)["bbox"]

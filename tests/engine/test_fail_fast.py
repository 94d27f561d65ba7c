"""Checked when the trainer starts: what the evaluation after training needs (not after training),
the sampler's parameters and the stage-1 checkpoint (before the model is built)."""
import json
import os

import pytest
import torch

from detectron2.config import LazyConfig
from detectron2.data import DatasetCatalog, MetadataCatalog

from lt_det.data import register_lvis_format
from lt_det.engine import Trainer, lazy_train
from lt_det.engine.checkpoint import UnreadableCheckpointError
from lt_det.engine.config_checks import check_test_datasets
from tiny_dataset import REPO, TINY_NUM_CLASSES

LAZY_DEMO = os.path.join(REPO, "configs", "lazy", "demo_synthetic_lt.py")
LAZY_CRT = os.path.join(REPO, "configs", "lazy", "demo_synthetic_lt_cRT.py")


def lazy_config(path, tmp_path, *overrides):
    """The lazy config ``path`` on the tiny set, writing to ``tmp_path/out``."""
    base = ["train.device=cpu", f"train.output_dir={tmp_path / 'out'}",
            f"model.roi_heads.num_classes={TINY_NUM_CLASSES}"]
    return LazyConfig.apply_overrides(LazyConfig.load(path), base + list(overrides))


def _register_copy(name, tiny_dataset_root, tmp_path, change):
    """The tiny val json, changed by ``change(json)``, registered as ``name``."""
    with open(tiny_dataset_root / "synthetic_lt" / "synthetic_lt_val.json") as f:
        data = json.load(f)
    change(data)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_lvis_format(name, str(path), str(tiny_dataset_root / "synthetic_lt"))
    return str(path)


def _drop_category(data):
    data["categories"] = data["categories"][:-1]
    removed = {c["id"] for c in data["categories"]}
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] in removed]
    for img in data["images"]:
        for key in ("neg_category_ids", "not_exhaustive_category_ids"):
            img[key] = [c for c in img.get(key, []) if c in removed]


def _drop_frequency(data):
    for c in data["categories"]:
        del c["frequency"]


def test_a_test_set_with_another_class_count_fails_before_training(quick_cfg, tiny_dataset_root, tmp_path):
    path = _register_copy("val_fewer_classes", tiny_dataset_root, tmp_path, _drop_category)
    cfg = quick_cfg("DATASETS.TEST", "('val_fewer_classes',)")
    with pytest.raises(ValueError, match=f"'val_fewer_classes' \\({path}\\) has 11 categories; the model has 12 "
                                         "classes \\(MODEL.ROI_HEADS.NUM_CLASSES\\)"):
        Trainer(cfg)


def test_an_unregistered_test_set_fails_before_training(quick_cfg):
    with pytest.raises(KeyError, match="Test dataset 'no_such_val' is not registered"):
        Trainer(quick_cfg("DATASETS.TEST", "('no_such_val',)"))


def test_frequency_groups_missing_from_the_test_json(quick_cfg, tiny_dataset_root, tmp_path):
    _register_copy("val_no_frequency", tiny_dataset_root, tmp_path, _drop_frequency)
    # the training statistics give them: accepted with hotcoco, refused for lvis-api
    Trainer(quick_cfg("DATASETS.TEST", "('val_no_frequency',)"))
    with pytest.raises(ValueError, match="'lvis' evaluation backend reads it from the file"):
        Trainer(quick_cfg("DATASETS.TEST", "('val_no_frequency',)", "TEST.LVIS_EVAL.BACKEND", "lvis"))
    # without training statistics of the same classes, nothing gives them
    with pytest.raises(KeyError, match="categories without 'frequency'.*no training dataset"):
        check_test_datasets(["val_no_frequency"], 12, [], "hotcoco")


# What the model or the data loader would otherwise meet only once built: refused before either.


@pytest.fixture
def model_never_built(monkeypatch):
    """The trainers build no model from here on: a check that comes after it fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was built before the check")

    monkeypatch.setattr(Trainer, "build_model", classmethod(refuse))
    monkeypatch.setattr(lazy_train, "build_lazy_model", refuse)


@pytest.mark.parametrize("exact_resume", [True, False])
def test_an_rfs_threshold_above_1_fails_before_the_model_is_built(quick_cfg, model_never_built, exact_resume):
    """With exact resume (every LVIS config) the sampler is built only when the first batch is drawn."""
    cfg = quick_cfg("DATALOADER.SAMPLER_TRAIN", "RepeatFactorTrainingSampler", "DATALOADER.REPEAT_THRESHOLD", "1.5",
                    "DATALOADER.EXACT_RESUME", str(exact_resume))
    with pytest.raises(ValueError, match=r"DATALOADER.REPEAT_THRESHOLD.*must be in \(0, 1\], got 1.5"):
        Trainer(cfg)


def test_a_lazy_rfs_threshold_above_1_fails_before_the_model_is_built(tiny_dataset_root, tmp_path, model_never_built):
    cfg = lazy_config(LAZY_DEMO, tmp_path, "dataloader.train.sampler=RepeatFactorTrainingSampler",
                      "dataloader.train.repeat_threshold=1.5", "dataloader.train.exact_resume=True")
    with pytest.raises(ValueError, match=r"dataloader.train.repeat_threshold\) must be in \(0, 1\], got 1.5"):
        lazy_train.do_train(cfg)


def truncated_checkpoint(path):
    torch.save({"model": {"w": torch.zeros(1000)}, "iteration": 9}, path)
    path.write_bytes(path.read_bytes()[:200])
    return str(path)


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_a_bad_stage1_checkpoint_fails_before_the_model_is_built(quick_cfg, tmp_path, model_never_built, damage):
    path = truncated_checkpoint(tmp_path / "stage1.pth") if damage == "truncated" else str(tmp_path / "none.pth")
    cfg = quick_cfg("DECOUPLED.ENABLED", "True", "MODEL.WEIGHTS", path)
    if damage == "truncated":
        with pytest.raises(UnreadableCheckpointError, match=f"Checkpoint {path} is unreadable"):
            Trainer(cfg)
    else:
        with pytest.raises(FileNotFoundError, match=f"Stage-1 checkpoint not found: '{path}' \\(set MODEL.WEIGHTS"):
            Trainer(cfg)


def test_a_stage2_run_with_a_checkpoint_to_resume_from_does_not_need_its_stage1_file(quick_cfg, tmp_path,
                                                                                       model_never_built):
    """Whether it resumes is known only later (resume_or_load, which loads stage 1 if it does not)."""
    cfg = quick_cfg("DECOUPLED.ENABLED", "True", "MODEL.WEIGHTS", str(tmp_path / "deleted_stage1.pth"))
    os.makedirs(cfg.OUTPUT_DIR)
    (tmp_path / "out" / "last_checkpoint").write_text("model_0000009.pth")
    with pytest.raises(AssertionError, match="the model was built"):  # the checks passed
        Trainer(cfg)


def test_a_stage1_url_is_left_to_the_load(quick_cfg, model_never_built):
    """detectron2's path manager cannot tell whether a URL exists (NotImplementedError): the load
    downloads it."""
    cfg = quick_cfg("DECOUPLED.ENABLED", "True", "MODEL.WEIGHTS", "detectron2://ImageNetPretrained/MSRA/R-50.pkl")
    with pytest.raises(AssertionError, match="the model was built"):  # the checks passed
        Trainer(cfg)


def test_a_truncated_lazy_stage1_checkpoint_fails_before_the_model_is_built(tiny_dataset_root, tmp_path,
                                                                            model_never_built):
    path = truncated_checkpoint(tmp_path / "stage1.pth")
    cfg = lazy_config(LAZY_CRT, tmp_path, f"train.init_checkpoint={path}")
    with pytest.raises(UnreadableCheckpointError, match=f"Checkpoint {path} is unreadable"):
        lazy_train.do_train(cfg)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "last_checkpoint").write_text("model_0000009.pth")
    with pytest.raises(UnreadableCheckpointError):  # not resuming: stage 1 is loaded
        lazy_train.do_train(cfg)
    with pytest.raises(AssertionError, match="the model was built"):  # resuming stage 2's own run
        lazy_train.do_train(cfg, resume=True)

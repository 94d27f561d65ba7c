"""What the evaluation after training needs is checked when the trainer starts, not after training."""
import json

import pytest

from detectron2.data import DatasetCatalog, MetadataCatalog

from lt_det.data import register_lvis_format
from lt_det.engine import Trainer
from lt_det.engine.config_checks import check_test_datasets


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

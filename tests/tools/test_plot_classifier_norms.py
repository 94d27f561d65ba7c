"""tools/plot_classifier_norms.py: per-class weight norms against training image counts."""
import csv
import importlib.util
import os

import pytest
import torch

from lt_det.modeling.tau_norm import CLASSIFIER_WEIGHT, class_weight_norms

from tiny_dataset import QUICK_CONFIG, REPO, TINY_NUM_CLASSES

spec = importlib.util.spec_from_file_location("plot_classifier_norms", os.path.join(REPO, "tools/plot_classifier_norms.py"))
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)


def test_norms_of_the_class_rows():
    weight = torch.tensor([[3.0, 4.0], [0.0, -1.0], [6.0, 8.0]])
    norms = class_weight_norms({CLASSIFIER_WEIGHT: weight}, class_rows=[0, 1])  # row 2: background
    assert norms.tolist() == [5.0, 1.0]
    # BAGS-like layout: class 0 in row 2, class 1 in row 0.
    assert class_weight_norms({CLASSIFIER_WEIGHT: weight}, class_rows=[2, 0]).tolist() == [10.0, 5.0]
    # An LWS checkpoint: the effective row is s_c w_c, one scale per class row.
    lws = {CLASSIFIER_WEIGHT: weight, "roi_heads.box_predictor.cls_score.scale": torch.tensor([0.5, -3.0])}
    assert class_weight_norms(lws, class_rows=[0, 1]).tolist() == [2.5, 3.0]
    with pytest.raises(KeyError, match="cls_score"):
        class_weight_norms({"other": weight}, class_rows=[0, 1])
    with pytest.raises(ValueError, match="distinct rows of a classifier with 3 rows"):
        class_weight_norms({CLASSIFIER_WEIGHT: weight}, class_rows=[0, 1, 2, 3])


def test_writes_plot_and_csv_with_the_training_counts(tiny_dataset_root, tmp_path):
    from lt_det.data import get_class_stats

    weight = torch.zeros(TINY_NUM_CLASSES + 1, 2)
    weight[:, 0] = torch.arange(TINY_NUM_CLASSES + 1, dtype=torch.float32)  # norm of row k is k
    checkpoint = tmp_path / "model.pth"
    torch.save({"model": {CLASSIFIER_WEIGHT: weight}}, checkpoint)
    path = tool.main(["--config-file", QUICK_CONFIG, "--weights", str(checkpoint), "--output-dir", str(tmp_path)])
    assert os.path.getsize(path) > 0
    with open(tmp_path / "classifier_norms.csv") as f:
        rows = list(csv.DictReader(f))
    stats = get_class_stats("synthetic_lt_train")
    assert [float(r["weight_norm"]) for r in rows] == list(range(TINY_NUM_CLASSES))
    assert [int(r["train_image_count"]) for r in rows] == stats.image_count.tolist()
    assert [r["frequency"] for r in rows] == stats.frequency.tolist()

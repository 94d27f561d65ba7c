"""The detectron2 evaluator end to end on the hand-worked split, with two simulated processes,
and the standalone command on the same files."""
import csv
import json
import logging
import math
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

import detectron2.utils.comm as comm
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog
from detectron2.structures import Boxes, Instances

from lt_det.evaluation import add_evaluation_config, build_lvis_evaluator
from lt_det.evaluation.lvis_eval import GroundTruthInfo, evaluate_lvis

from .test_hand_worked import AP_1, AP_2, DETS, GT

TOOLS = os.path.join(os.path.dirname(__file__), "..", "..", "tools")


def _register(name, tmp_path):
    gt_json = os.path.join(str(tmp_path), "gt.json")
    with open(gt_json, "w") as f:
        json.dump(GT, f)
    if name in MetadataCatalog.list():
        MetadataCatalog.remove(name)
    cat_ids = [c["id"] for c in GT["categories"]]
    MetadataCatalog.get(name).set(json_file=gt_json, evaluator_type="lvis",
                                  thing_classes=[c["name"] for c in GT["categories"]],
                                  thing_dataset_id_to_contiguous_id={c: i for i, c in enumerate(cat_ids)})
    return gt_json


def _model_output(image_id):
    """The hand-worked detections of one image as a model's ``Instances`` (contiguous classes)."""
    dets = [d for d in DETS if d["image_id"] == image_id]
    inst = Instances((100, 100))
    inst.pred_boxes = Boxes(torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in dets)]))
    inst.scores = torch.tensor([d["score"] for d in dets])
    inst.pred_classes = torch.tensor([d["category_id"] - 1 for d in dets])
    inst.pred_masks = torch.from_numpy(np.stack([mask_util.decode(d["segmentation"]) for d in dets])).bool()
    return [{"image_id": image_id}], [{"instances": inst}]


def _cfg(fixed_ap):
    cfg = get_cfg()
    add_evaluation_config(cfg)
    cfg.MODEL.MASK_ON = True
    cfg.TEST.LVIS_EVAL.FIXED_AP.ENABLED = fixed_ap
    cfg.TEST.LVIS_EVAL.FIXED_AP.DETS_PER_CLASS = 1
    return cfg


def _simulate_two_processes(monkeypatch, cfg, name, out_dir):
    """Process 1 evaluates image 2, then process 0 image 1; process 0 merges both."""
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(comm, "synchronize", lambda: None)
    results = {}
    for rank, image_id in ((1, 2), (0, 1)):
        monkeypatch.setattr(comm, "get_rank", lambda rank=rank: rank)
        monkeypatch.setattr(comm, "is_main_process", lambda rank=rank: rank == 0)
        evaluator = build_lvis_evaluator(cfg, name, out_dir)
        evaluator.reset()
        evaluator.process(*_model_output(image_id))
        results[rank] = evaluator.evaluate()
    return results


def test_evaluator_two_processes_hand_worked(monkeypatch, tmp_path):
    _register("lt_det_test_hand", tmp_path)
    out_dir = str(tmp_path / "inference")
    results = _simulate_two_processes(monkeypatch, _cfg(fixed_ap=True), "lt_det_test_hand", out_dir)
    assert results[1] == {}
    ap = (AP_1 + AP_2) / 2 * 100
    for task in ("bbox", "segm"):
        m = results[0][task]
        assert m["AP"] == pytest.approx(ap, abs=1e-9)
        assert m["APf"] == pytest.approx(AP_1 * 100, abs=1e-9)
        assert m["APc"] == pytest.approx(AP_2 * 100, abs=1e-9)
        assert math.isnan(m["APr"])
        # Fixed AP with 1 detection per class (see test_hand_worked)
        assert results[0][f"{task}_fixed_ap"]["AP"] == pytest.approx(51 / 101 / 2 * 100, abs=1e-9)
    assert not os.path.exists(os.path.join(out_dir, "lvis_shards"))

    with open(os.path.join(out_dir, "lvis_per_class.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["category_id"] for r in rows] == ["1", "2", "3"]
    assert [r["frequency"] for r in rows] == ["f", "c", "r"]
    assert [r["train_image_count"] for r in rows] == ["200", "50", "3"]  # the json's, no train stats
    assert float(rows[0]["AP_segm"]) == pytest.approx(AP_1 * 100, abs=1e-9)
    assert rows[2]["AP_bbox"] == ""  # no ground truth: undefined, not 0
    with open(os.path.join(out_dir, "lvis_per_class.json")) as f:
        assert json.load(f)[1]["AP_bbox"] == pytest.approx(AP_2 * 100, abs=1e-9)
    for prefix, folder in (("lvis", out_dir), ("lvis_fixed_ap", os.path.join(out_dir, "fixed_ap"))):
        for task in ("bbox", "segm"):
            for plot in ("ap_vs_image_count", "ap_by_group"):
                assert os.path.getsize(os.path.join(folder, f"{prefix}_{plot}_{task}.png")) > 0


def test_standalone_command_matches_evaluator(tmp_path):
    import importlib.util

    gt_json = _register("lt_det_test_tool", tmp_path)
    results_json = str(tmp_path / "results.json")
    with open(results_json, "w") as f:
        json.dump(DETS, f)
    spec = importlib.util.spec_from_file_location("evaluate_lvis_results", os.path.join(TOOLS, "evaluate_lvis_results.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    metrics = tool.main([gt_json, results_json, "--output-dir", str(tmp_path / "out"), "--no-per-class"])
    assert set(metrics) == {"bbox", "segm"}
    assert metrics["segm"]["AP"] == pytest.approx((AP_1 + AP_2) / 2 * 100, abs=1e-9)
    with open(tmp_path / "out" / "metrics.json") as f:
        assert json.load(f)["bbox"]["APf"] == pytest.approx(AP_1 * 100, abs=1e-9)

    # A segm-only results file (as lt_det writes lvis_results_segm.json) evaluates segm only.
    with open(results_json, "w") as f:
        json.dump([{k: v for k, v in d.items() if k != "bbox"} for d in DETS], f)
    metrics = tool.main([gt_json, results_json, "--output-dir", str(tmp_path / "out_segm"), "--no-per-class"])
    assert set(metrics) == {"segm"}
    assert metrics["segm"]["AP"] == pytest.approx((AP_1 + AP_2) / 2 * 100, abs=1e-9)


@pytest.mark.parametrize("field, bad, message", [("image_id", 99, "image id"), ("category_id", 0, "category id")])
def test_unknown_ids_are_a_clear_error(tmp_path, field, bad, message):
    gt_json = _register("lt_det_test_bad", tmp_path)
    dets = [dict(d) for d in DETS]
    dets[3][field] = bad
    with pytest.raises(ValueError, match=f"(?s){message}.*{bad}"):
        evaluate_lvis(GroundTruthInfo.load(gt_json), lambda: iter(dets), str(tmp_path), ["bbox"], "hotcoco")


def test_empty_results_give_nan_with_a_warning(tmp_path, caplog):
    gt_json = _register("lt_det_test_empty", tmp_path)
    with caplog.at_level(logging.WARNING):
        metrics = evaluate_lvis(GroundTruthInfo.load(gt_json), lambda: iter([]), str(tmp_path), ["bbox", "segm"],
                                "hotcoco", fixed_ap_dets_per_class=10)
    assert set(metrics) == {"bbox", "segm", "bbox_fixed_ap", "segm_fixed_ap"}
    assert all(math.isnan(v) for m in metrics.values() for v in m.values())
    assert "No bbox detections" in caplog.text and "No segm detections" in caplog.text


def test_per_class_counts_come_from_training_class_stats(tmp_path):
    _register("lt_det_test_val", tmp_path)
    MetadataCatalog.get("lt_det_test_train").set(
        num_annotated_images=1000,
        class_statistics=[{"id": c, "image_count": n, "instance_count": 2 * n, "frequency": g}
                           for c, n, g in ((1, 700, "f"), (2, 40, "c"), (3, 5, "r"))])
    cfg = _cfg(fixed_ap=False)
    cfg.DATASETS.TRAIN = ("lt_det_test_train",)
    evaluator = build_lvis_evaluator(cfg, "lt_det_test_val", str(tmp_path / "out"))
    evaluator.reset()
    for image_id in (1, 2):
        evaluator.process(*_model_output(image_id))
    results = evaluator.evaluate()
    with open(tmp_path / "out" / "lvis_per_class.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["train_image_count"] for r in rows] == ["700", "40", "5"]
    # BAGS's bins from the training instance counts 1400, 80, 10: AP4, AP2, AP2 (class 3 has no
    # ground truth in this split, so AP2 is class 2's alone); AP1 and AP3 hold no class
    assert [r["instance_bin"] for r in rows] == ["AP4", "AP2", "AP2"]
    for task in ("bbox", "segm"):
        m = results[task]
        assert m["AP4"] == pytest.approx(AP_1 * 100, abs=1e-9) and m["AP2"] == pytest.approx(AP_2 * 100, abs=1e-9)
        assert math.isnan(m["AP1"]) and math.isnan(m["AP3"])


def _tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location("evaluate_lvis_results", os.path.join(TOOLS, "evaluate_lvis_results.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_failed_evaluation_keeps_the_detections_for_the_standalone_command(monkeypatch, tmp_path, caplog):
    from lt_det.evaluation import backends

    gt_json = _register("lt_det_test_fail", tmp_path)
    out_dir = tmp_path / "inference"

    def out_of_memory(*args):
        raise MemoryError("simulated")

    with monkeypatch.context() as m:
        m.setitem(backends.BACKENDS, "hotcoco", out_of_memory)
        with pytest.raises(MemoryError), caplog.at_level(logging.ERROR):
            _simulate_two_processes(m, _cfg(fixed_ap=False), "lt_det_test_fail", str(out_dir))
    kept = out_dir / "lvis_detections.json"
    assert f"detections are kept in {kept}" in caplog.text
    assert not (out_dir / "lvis_shards").exists()
    with open(kept) as f:
        assert len(json.load(f)) == len(DETS)  # both processes' detections, every field
    metrics = _tool().main([gt_json, str(kept), "--output-dir", str(tmp_path / "again"), "--no-per-class"])
    assert metrics["bbox"]["AP"] == pytest.approx((AP_1 + AP_2) / 2 * 100, abs=1e-9)
    assert metrics["segm"]["AP"] == pytest.approx((AP_1 + AP_2) / 2 * 100, abs=1e-9)


def _gt_without_frequency(tmp_path):
    gt = json.loads(json.dumps(GT))
    for c in gt["categories"]:
        del c["frequency"]
    path = str(tmp_path / "gt_no_frequency.json")
    with open(path, "w") as f:
        json.dump(gt, f)
    return path


def test_frequency_groups_come_from_training_statistics_when_the_json_has_none(tmp_path):
    path = _gt_without_frequency(tmp_path)
    with pytest.raises(KeyError, match="have no 'frequency'.*no training statistics"):
        GroundTruthInfo.load(path)
    # the hand-worked split's groups are f, c, r; swapping the first two swaps APf and APc
    gt = GroundTruthInfo.load(path, train_frequency=["c", "f", "r"])
    metrics = evaluate_lvis(gt, lambda: iter(DETS), str(tmp_path / "out"), ["bbox"], "hotcoco",
                            save_per_class_results=False)
    assert metrics["bbox"]["APc"] == pytest.approx(AP_1 * 100, abs=1e-9)
    assert metrics["bbox"]["APf"] == pytest.approx(AP_2 * 100, abs=1e-9)
    for backend in ("lvis", "faster_coco_eval"):  # they read "frequency" from the file itself
        with pytest.raises(ValueError, match=f"'{backend}' backend reads each category's 'frequency'"):
            evaluate_lvis(gt, lambda: iter(DETS), str(tmp_path / "out"), ["bbox"], backend)

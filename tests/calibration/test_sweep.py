"""The calibration sweep: each value's detections from the one-pass sweep equal a full inference
with that value; the tuning split may not be an evaluation split; the tool writes its table and
the chosen config."""
import json
import os
import subprocess
import sys

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.evaluation import DatasetEvaluator

from lt_det.calibration import build_calibration
from lt_det.calibration.sweep import check_tuning_split, choose, sweep_calibrations
from lt_det.engine import Trainer
from lt_det.modeling.fast_rcnn import read_class_stats
from tiny_dataset import REPO

FIELDS = ("pred_boxes", "scores", "pred_classes", "pred_masks")
GRID = [("norcal", "GAMMA", 0.0), ("norcal", "GAMMA", 1.0), ("fracal", "LAMBDA", 2.0), ("tau_norm", "TAU", 1.0)]


class Recorder(DatasetEvaluator):
    """Keeps every image's detections; its "results" are their count."""

    def reset(self):
        self.outputs = {}

    def process(self, inputs, outputs):
        for x, y in zip(inputs, outputs):
            self.outputs[x["image_id"]] = y["instances"].to("cpu")

    def evaluate(self):
        return {"detections": {"count": sum(len(v) for v in self.outputs.values())}}


def configured(cfg, method, key, value):
    out = cfg.clone()
    out.TEST.CALIBRATION.METHOD = method
    out.TEST.CALIBRATION[method.upper()][key] = value
    return out


def field(instances, name):
    value = instances.get(name)
    return value.tensor if hasattr(value, "tensor") else value


CASCADE = ("MODEL.ROI_HEADS.NAME", "LTCascadeROIHeads", "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", True)


@pytest.mark.parametrize("heads", [(), CASCADE], ids=["standard", "cascade"])
def test_each_value_of_the_sweep_equals_a_full_inference_with_it(quick_cfg, heads):
    cfg = quick_cfg("MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, *heads)  # an untrained model: keep every detection
    torch.manual_seed(0)
    model = Trainer.build_model(cfg).eval()
    stats = read_class_stats(cfg)
    calibrations = [build_calibration(configured(cfg, *point), stats) for point in GRID]
    recorders = [Recorder() for _ in GRID]
    loader = Trainer.build_test_loader(cfg, "synthetic_lt_val")
    results, seconds = sweep_calibrations(model, loader, calibrations, recorders)
    assert set(seconds) == {"shared", "per_value", "evaluation"}
    predictors = list(model.roi_heads.box_predictor) if heads else [model.roi_heads.box_predictor]
    assert all(p.calibration is None for p in predictors)  # the model is left as it was
    for calibration, recorder, result in zip(calibrations, recorders, results):
        for predictor in predictors:
            predictor.calibration = calibration
        with torch.no_grad():
            for inputs in loader:
                for x, y in zip(inputs, model(inputs)):
                    swept = recorder.outputs[x["image_id"]]
                    assert len(swept) == len(y["instances"]) > 0
                    for name in FIELDS:
                        assert torch.equal(field(swept, name), field(y["instances"].to("cpu"), name)), name
        assert result["detections"]["count"] == sum(len(v) for v in recorder.outputs.values())
    # the grid's values differ: the sweep did not evaluate one calibration G times
    scores = [torch.cat([r.outputs[i].scores for i in sorted(r.outputs)]) for r in recorders]
    assert not torch.equal(scores[0], scores[1]) and not torch.equal(scores[1], scores[2])


def test_tuning_on_an_evaluation_split_is_refused(quick_cfg):
    cfg = quick_cfg("DATASETS.TEST", "('synthetic_lt_val',)")
    with pytest.raises(ValueError, match="Refusing to tune on 'synthetic_lt_val': it is an evaluation split"):
        check_tuning_split(cfg, "synthetic_lt_val")
    with pytest.raises(ValueError, match="Name the held-out split"):
        check_tuning_split(cfg, "")
    assert check_tuning_split(cfg, "synthetic_lt_train") == "synthetic_lt_train"


def test_choose_takes_the_best_and_the_first_on_ties():
    results = [{"bbox": {"AP": 1.0}}, {"bbox": {"AP": 3.0}}, {"bbox": {"AP": 3.0}}, {"bbox": {"AP": 2.0}}]
    best, table = choose([0.0, 0.5, 1.0, 1.5], results, "bbox/AP")
    assert best == 0.5 and table == [(0.0, 1.0), (0.5, 3.0), (1.0, 3.0), (1.5, 2.0)]
    with pytest.raises(KeyError, match="No metric 'segm/AP'.*bbox/AP"):
        choose([0.0], results[:1], "segm/AP")


def test_the_tool_writes_the_table_and_the_chosen_config(quick_cfg, tmp_path):
    cfg = quick_cfg("MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0)
    torch.manual_seed(0)
    model = Trainer.build_model(cfg)
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("model")
    chosen = tmp_path / "chosen.yaml"
    out = tmp_path / "sweep_out"
    # the tiny set has no held-out split: tune on its training split (warned), evaluate on val
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools/calibration_sweep.py"), "--config-file",
         os.path.join(REPO, "configs/quick_schedules/mask_rcnn_R_18_FPN_synthetic_lt_instant_test.yaml"),
         "--weights", str(tmp_path / "model.pth"), "--method", "norcal", "--values", "0", "0.5",
         "--tune-dataset", "synthetic_lt_train", "--metric", "bbox/AP50", "--output-config", str(chosen),
         "MODEL.DEVICE", "cpu", "MODEL.ROI_HEADS.NUM_CLASSES", str(cfg.MODEL.ROI_HEADS.NUM_CLASSES),
         "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "OUTPUT_DIR", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    with open(out / "calibration_sweep" / "calibration_sweep.json") as f:
        sweep = json.load(f)
    assert sweep["key"] == "GAMMA" and sweep["dataset"] == "synthetic_lt_train"
    assert [v for v, _ in sweep["table"]] == [0.0, 0.5] and sweep["best"] in (0.0, 0.5)
    text = chosen.read_text()
    assert f"GAMMA = {sweep['best']}" in text.splitlines()[0]
    from detectron2.config import get_cfg
    from lt_det.config import add_lt_det_config
    loaded = add_lt_det_config(get_cfg())
    loaded.merge_from_file(str(chosen))
    assert loaded.TEST.CALIBRATION.METHOD == "norcal" and loaded.TEST.CALIBRATION.NORCAL.GAMMA == sweep["best"]
    assert loaded.DATASETS.TEST == cfg.DATASETS.TEST  # chosen on the held-out split, evaluated on the test split

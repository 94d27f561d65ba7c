"""Data-parallel training with two CPU processes (gloo), through train_net.py's launcher."""
import json

import numpy as np


def test_two_process_cpu_training(train_net, tmp_path):
    out = tmp_path / "ddp"
    log = train_net("--config-file", "configs/quick_schedules/mask_rcnn_R_18_FPN_synthetic_lt_instant_test.yaml",
                    "--num-gpus", "2", "--dist-url", "auto",
                    "MODEL.ROI_HEADS.NUM_CLASSES", "12", "SOLVER.IMS_PER_BATCH", "4",
                    "OUTPUT_DIR", str(out))
    assert "Rank of current process: 0. World size: 2" in log
    # Non-main ranks log to their own file only (detectron2's setup_logger).
    assert "Rank of current process: 1. World size: 2" in (out / "log.txt.rank1").read_text()
    assert (out / "model_final.pth").exists()
    results = json.loads((out / "metrics_eval.json").read_text())
    assert "APr" in results["bbox"]

    # The evaluation after training scored the saved model: the same metrics from model_final.pth
    # evaluated alone (each process's BatchNorm statistics differ; evaluation uses the main one's).
    log = train_net("--config-file", "configs/quick_schedules/mask_rcnn_R_18_FPN_synthetic_lt_instant_test.yaml",
                    "--eval-only", "MODEL.WEIGHTS", str(out / "model_final.pth"),
                    "MODEL.ROI_HEADS.NUM_CLASSES", "12", "OUTPUT_DIR", str(tmp_path / "alone"))
    assert json.loads((tmp_path / "alone" / "metrics_eval.json").read_text()) == results
    # Metrics of a 4-iteration model are near 0 either way: its detections must be the same too.
    detections = [_scores_per_image(folder / "inference" / "synthetic_lt_val" / "lvis_results_bbox.json")
                  for folder in (out, tmp_path / "alone")]
    assert detections[0].keys() == detections[1].keys() and len(detections[0]) > 1
    for image_id, scores in detections[0].items():
        assert np.allclose(scores, detections[1][image_id], rtol=0, atol=1e-5), image_id


def _scores_per_image(results_json):
    per_image = {}
    for r in json.loads(results_json.read_text()):
        per_image.setdefault(r["image_id"], []).append(r["score"])
    return {image_id: np.sort(scores) for image_id, scores in per_image.items()}

"""Data-parallel training with two CPU processes (gloo), through train_net.py's launcher."""
import json


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

"""The two-stage demo end to end on the tiny synthetic set: train_net.py stage 1 -> BAGS stage 2
(new logit count, so a fresh classifier) -> evaluation, then the stage-2 checkpoint checked
tensor by tensor against stage 1."""
import json
import os

import torch

from tiny_dataset import QUICK_CONFIG, REPO, TINY_NUM_CLASSES

CLS = "roi_heads.box_predictor.cls_score"
# the instant-test schedule, applied to a full demo config
QUICK = ["MODEL.ROI_HEADS.NUM_CLASSES", str(TINY_NUM_CLASSES), "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "0",
         "SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "()", "DATALOADER.NUM_WORKERS", "0", "TEST.DETECTIONS_PER_IMAGE", "50"]


def test_bags_stage2_from_a_stage1_checkpoint(tmp_path, train_net):
    stage1, stage2 = tmp_path / "stage1", tmp_path / "stage2"
    train_net("--config-file", QUICK_CONFIG, *QUICK, "DATASETS.TEST", "()", "OUTPUT_DIR", str(stage1))
    log = train_net(
        "--config-file", os.path.join(REPO, "configs/demo/mask_rcnn_R_18_FPN_synthetic_lt_bags_stage2.yaml"), *QUICK,
        "MODEL.WEIGHTS", str(stage1 / "model_final.pth"), "OUTPUT_DIR", str(stage2),
    )
    assert "Stage 2 trains" in log and f"  {CLS}.weight ({TINY_NUM_CLASSES + 6}, " in log
    assert "classifier re-initialised" in log

    with open(stage2 / "metrics_eval.json") as f:
        assert "bbox" in json.load(f)
    before = torch.load(stage1 / "model_final.pth")["model"]
    after = torch.load(stage2 / "model_final.pth")["model"]
    assert set(before) == set(after)
    assert after[f"{CLS}.weight"].shape[0] == TINY_NUM_CLASSES + 6  # BAGS: C + 1 + 4 groups + 1
    for name in before:
        if not name.startswith(CLS):  # backbone (BatchNorm statistics included), RPN, heads
            assert torch.equal(before[name], after[name]), f"{name} changed in stage 2"

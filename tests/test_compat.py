"""A detectron2 without its compiled extension imports fully, its ops fail saying why, and numpy's
removed aliases are back after lt_det's set-up."""
import importlib
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

# tools/install_detectron2.py's pure-Python stand-in, rather than the compiled extension (.so)
STAND_IN = importlib.import_module("detectron2._C").__file__.endswith(".py")
CLEAR_ERROR = (r"detectron2 op '{}' is unavailable: .*without its compiled C\+\+/CUDA extension"
               r".*build detectron2 from source")


@pytest.mark.skipif(not os.environ.get("LT_DET_EXPECT_DETECTRON2"),
                    reason="no detectron2 asked for (`make test D2=0.6` or `D2=main` sets it)")
def test_suite_runs_on_the_detectron2_asked_for():
    """A test matrix can never run the same detectron2 twice: each run checks it has the one it
    asked for, by a feature of main (both versions say __version__ "0.6")."""
    from detectron2.utils import comm

    from lt_det.compat import detectron2_flavour

    expected = os.environ["LT_DET_EXPECT_DETECTRON2"]
    assert detectron2_flavour() == expected
    assert hasattr(comm, "create_local_process_group") == (expected == "main")


def test_detectron2_imports_without_lt_det():
    """The install alone makes detectron2 whole: a fresh interpreter that never imports lt_det."""
    code = (
        "import sys, detectron2.layers, detectron2.modeling, detectron2.evaluation.fast_eval_api; "
        "assert not any(m.startswith('lt_det') for m in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(not STAND_IN, reason="this detectron2 has its compiled extension")
def test_compiled_ops_fail_with_a_clear_error():
    from detectron2.layers import ROIAlignRotated, batched_nms_rotated, nms_rotated
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    boxes, scores = torch.zeros(2, 5), torch.ones(2)
    features, rotated_rois = torch.zeros(1, 1, 4, 4), torch.zeros(1, 6)
    calls = [  # (the op the error must name, a call of detectron2's API that needs it)
        ("nms_rotated", lambda: nms_rotated(boxes, scores, 0.5)),  # through torch.ops.detectron2
        ("nms_rotated", lambda: batched_nms_rotated(boxes, scores, torch.zeros(2), 0.5)),
        ("box_iou_rotated", lambda: pairwise_iou_rotated(boxes, boxes)),
        ("roi_align_rotated_forward", lambda: ROIAlignRotated((2, 2), 1.0, 0)(features, rotated_rois)),
        ("InstanceAnnotation", _evaluate_one_box_with_the_cpp_coco_evaluator),
    ]
    for op, call in calls:
        with pytest.raises(RuntimeError, match=CLEAR_ERROR.format(op)):
            call()


def _evaluate_one_box_with_the_cpp_coco_evaluator():
    from pycocotools.coco import COCO

    from detectron2.evaluation.fast_eval_api import COCOeval_opt

    gt = COCO()
    gt.dataset = {"images": [{"id": 1}], "categories": [{"id": 1}], "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2], "area": 4, "iscrowd": 0}]}
    gt.createIndex()
    detections = gt.loadRes([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2], "score": 1.0}])
    COCOeval_opt(gt, detections, "bbox").evaluate()


def test_environment_report_works():
    from detectron2.utils.collect_env import collect_env_info

    report = collect_env_info()
    assert "PyTorch" in report
    assert not STAND_IN or "pure-Python stand-in" in report


def test_removed_numpy_aliases_work_as_before():
    # tests/conftest.py ran lt_det.builtin.setup_environment
    assert (np.int, np.float) == (int, float)
    assert np.zeros(2).astype(np.bool).dtype == np.dtype(bool)  # numpy 2 has np.bool again


def test_main_only_keys_are_exactly_what_this_detectron2_has_or_lacks():
    """MAIN_ONLY_KEYS against the installed detectron2: main has every one, 0.6 none (lt_det adds
    the other main keys itself, so both versions accept those)."""
    from detectron2.config import get_cfg

    from lt_det.compat import detectron2_flavour
    from lt_det.config import MAIN_ONLY_KEYS

    def has(cfg, key):
        node = cfg
        for part in key.split("."):
            if part not in node:
                return False
            node = node[part]
        return True

    on_main = detectron2_flavour() == "main"
    assert [has(get_cfg(), key) for key in MAIN_ONLY_KEYS] == [on_main] * len(MAIN_ONLY_KEYS)


def test_a_main_only_key_names_the_version_it_needs(tmp_path):
    from detectron2.config import get_cfg

    from lt_det.compat import detectron2_flavour
    from lt_det.config import add_lt_det_config, merge_config

    config = tmp_path / "c.yaml"
    config.write_text("SOLVER:\n  NUM_DECAYS: 4\n")
    cfg = add_lt_det_config(get_cfg())
    if detectron2_flavour() == "main":
        assert merge_config(cfg, str(config)).SOLVER.NUM_DECAYS == 4
        return
    with pytest.raises(KeyError, match=r"SOLVER.NUM_DECAYS \(.*\) is a detectron2 main key; the installed "
                                       r"detectron2 is 0.6. Install main"):
        merge_config(cfg, str(config))
    with pytest.raises(KeyError, match="FLOAT32_PRECISION .* is a detectron2 main key"):
        merge_config(add_lt_det_config(get_cfg()), opts=["FLOAT32_PRECISION", "high"])
    with pytest.raises(AssertionError, match="Non-existent key: SOLVER.NOT_A_KEY"):  # others: YACS's own error
        merge_config(add_lt_det_config(get_cfg()), opts=["SOLVER.NOT_A_KEY", "1"])

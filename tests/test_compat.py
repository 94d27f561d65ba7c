"""A detectron2 without its compiled extension imports fully; its ops fail saying why."""
import pytest
import torch

from lt_det import compat


def test_detectron2_layers_and_modeling_import():
    import detectron2.layers  # noqa: F401  (imports detectron2._C at top level in 0.6)
    import detectron2.modeling  # noqa: F401
    from detectron2.evaluation import LVISEvaluator  # noqa: F401


@pytest.mark.skipif(compat.HAS_COMPILED_OPS, reason="this detectron2 has its compiled extension")
def test_rotated_ops_fail_with_a_clear_error():
    from detectron2.layers import batched_nms_rotated, nms_rotated
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    boxes, scores = torch.zeros(2, 5), torch.ones(2)
    calls = {
        "nms_rotated": lambda: nms_rotated(boxes, scores, 0.5),
        "batched_nms_rotated": lambda: batched_nms_rotated(boxes, scores, torch.zeros(2), 0.5),
        "box_iou_rotated": lambda: pairwise_iou_rotated(boxes, boxes),
    }
    for op, call in calls.items():
        with pytest.raises(RuntimeError, match=f"'{op}' is unavailable: .*without its compiled C\\+\\+/CUDA extension"):
            call()


def test_environment_report_works():
    from detectron2.utils.collect_env import collect_env_info

    assert "PyTorch" in collect_env_info()


def test_removed_numpy_aliases_work_as_before():
    import numpy as np

    assert (np.int, np.float) == (int, float)
    assert np.zeros(2).astype(np.bool).dtype == np.dtype(bool)  # numpy 2 has np.bool again

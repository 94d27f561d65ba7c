"""Constants of the tests' tiny synthetic set and instant config (importable by test modules;
``conftest`` is not, since several folders have one)."""
import os

from lt_det.data.synthetic import SyntheticLTConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_NUM_CLASSES = 12
TINY = SyntheticLTConfig(num_classes=TINY_NUM_CLASSES, max_images_per_class=40, val_instances_per_class=2)
QUICK_CONFIG = os.path.join(REPO, "configs/quick_schedules/mask_rcnn_R_18_FPN_synthetic_lt_instant_test.yaml")

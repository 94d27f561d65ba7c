"""lt_det: long-tailed object detection methods as one detectron2 project extension."""
from . import compat  # noqa: F401  (must run before any detectron2.layers import)

__version__ = "0.1.0"

"""``add_lt_det_config``: every config key lt_det adds to detectron2's, declared once.

Keys detectron2 already has are read, never redefined. Each sub-function declares one node and
comments every key with its meaning, the paper's symbol and the source of its default.
"""
from detectron2.config import CfgNode


def add_lt_det_config(cfg: CfgNode) -> CfgNode:
    """Adds lt_det's keys to a detectron2 config (in place) and returns it."""
    return cfg

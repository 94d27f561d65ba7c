"""Config keys of the calibration stage (``TEST.CALIBRATION``) and ``build_calibration``."""
import logging
from typing import Optional

from detectron2.config import CfgNode as CN

from lt_det.data.class_stats import ClassStats

from .base import Calibration
from .registry import get_calibration_class, list_calibrations

__all__ = ["add_calibration_config", "build_calibration"]

logger = logging.getLogger(__name__)


def add_calibration_config(cfg: CN) -> None:
    """Add ``TEST.CALIBRATION`` and each registered calibration's keys to ``cfg`` (in place)."""
    cfg.TEST.CALIBRATION = CN()
    # Post-hoc re-scoring of the box classifier's test scores, before the score threshold,
    # per-class NMS and top-k: "none", or a registered name (lt_det.calibration.list_calibrations()):
    # logit_adjustment (Menon et al. 2021), norcal (Pan et al. 2021), fracal (Alexandridis et al.
    # 2025), tau_norm (Kang et al. 2020).
    cfg.TEST.CALIBRATION.METHOD = "none"
    for name in list_calibrations():
        node = CN()
        get_calibration_class(name).add_config(node)
        cfg.TEST.CALIBRATION[name.upper()] = node


def build_calibration(cfg: CN, class_stats: Optional[ClassStats]) -> Optional[Calibration]:
    """The calibration ``cfg`` selects, or None for "none" and for a method's identity setting.

    Raises:
        KeyError: unknown method (lists the registered ones).
        ValueError: a method that needs training statistics and the training set has none.
    """
    method = cfg.TEST.CALIBRATION.METHOD
    if method in ("none", ""):
        return None
    cls = get_calibration_class(method)
    if cls.is_identity(cfg.TEST.CALIBRATION[method.upper()]):
        logger.info(f"TEST.CALIBRATION.{method.upper()} makes '{method}' the identity: no calibration")
        return None
    if class_stats is None and cls.needs_class_stats:
        raise ValueError(
            f"Calibration '{method}' (TEST.CALIBRATION.METHOD) needs the per-class training statistics of "
            f"DATASETS.TRAIN = {tuple(cfg.DATASETS.TRAIN)}, which has none (register the dataset with its "
            "class statistics, as lt_det.data.datasets.register_lvis_format does)")
    calibration = cls.from_config(cfg, class_stats)
    logger.info(f"Calibration at inference: {method}")
    return calibration

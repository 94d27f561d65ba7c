"""Post-hoc calibration of a trained detector's class scores at inference (TEST.CALIBRATION).

Importing this package registers lt_det's calibrations: logit adjustment, NorCal, FRACAL and
τ-normalisation. The box predictor applies the selected one to its test scores
(``LTFastRCNNOutputLayers.predict_probs``), whatever loss trained the model.
"""
from . import fracal, logit_adjustment, norcal, tau_norm  # noqa: F401  (registers them)
from .base import Calibration
from .config import add_calibration_config, build_calibration
from .registry import get_calibration_class, list_calibrations, register_calibration

__all__ = ["Calibration", "add_calibration_config", "build_calibration", "get_calibration_class",
           "list_calibrations", "register_calibration"]

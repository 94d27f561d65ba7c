"""The registry of post-hoc calibrations (the value of TEST.CALIBRATION.METHOD).

A registered calibration is a :class:`lt_det.calibration.base.Calibration` with two classmethods:
``add_config(node)`` declares its keys under ``TEST.CALIBRATION.<ITS NAME IN CAPITALS>`` and
``from_config(cfg, class_stats)`` builds it. Downstream projects register their own::

    from lt_det.calibration import Calibration, register_calibration

    @register_calibration("my_calibration")
    class MyCalibration(Calibration):
        ...

and select it with ``TEST.CALIBRATION.METHOD: "my_calibration"`` (import its module before the
config is made, so that its keys exist).
"""
from typing import List, Type

from lt_det.registry import NameRegistry

_CALIBRATIONS = NameRegistry("calibration", "calibrations", "TEST.CALIBRATION.METHOD", "the config is made")


def register_calibration(name: str):
    """Class decorator registering a calibration under ``name``."""
    return _CALIBRATIONS.register(name)


def list_calibrations() -> List[str]:
    """Sorted names of every registered calibration."""
    return _CALIBRATIONS.names()


def get_calibration_class(name: str) -> Type:
    """The class registered as ``name``; an unknown name fails with the list of valid names."""
    return _CALIBRATIONS.get(name, also_valid="none")

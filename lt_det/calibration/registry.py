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
from typing import Dict, List, Type

# name -> class; a plain dict for the same reason as the loss registry's (snake_case names).
_CALIBRATIONS: Dict[str, Type] = {}


def register_calibration(name: str):
    """Class decorator registering a calibration under ``name``."""

    def deco(cls):
        if name in _CALIBRATIONS and _CALIBRATIONS[name] is not cls:
            raise KeyError(f"A calibration named '{name}' is already registered ({_CALIBRATIONS[name].__qualname__})")
        _CALIBRATIONS[name] = cls
        return cls

    return deco


def list_calibrations() -> List[str]:
    """Sorted names of every registered calibration."""
    return sorted(_CALIBRATIONS)


def get_calibration_class(name: str) -> Type:
    """The class registered as ``name``; an unknown name fails with the list of valid names."""
    if name not in _CALIBRATIONS:
        raise KeyError(f"Unknown calibration '{name}' (TEST.CALIBRATION.METHOD). Registered: 'none', "
                       f"{', '.join(repr(n) for n in list_calibrations())}. A calibration defined in another "
                       "project must be imported (importing registers it) before the config is made.")
    return _CALIBRATIONS[name]

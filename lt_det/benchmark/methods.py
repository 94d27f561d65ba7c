"""The benchmark's method list: ``configs/benchmark/methods.yaml`` read into :class:`Method` s.

Each entry names a table row's stage, its config overrides and the row it is compared with; the
file's header documents the fields. Adding a method is adding an entry.
"""
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import yaml

from ..calibration import get_calibration_class

STAGES = ("1", "2", "posthoc")
DEFAULT_METHODS_FILE = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "benchmark", "methods.yaml")
_FIELDS = {"stage", "config", "schedule", "baseline", "rfs", "cite", "from", "calibration", "values"}


@dataclass(frozen=True)
class Method:
    name: str
    stage: str  # one of STAGES
    config: Dict[str, object] = field(default_factory=dict)  # overrides, detectron2 key -> value
    baseline: Optional[str] = None  # the row the difference is reported against
    rfs: bool = False  # the paper's recipe samples with RFS
    cite: str = ""
    source: Optional[str] = None  # stage 2 / post hoc: the stage-1 method whose model it starts from
    schedule: Optional[Tuple[float, float, float]] = None  # stage 2: (length, step1, step2) fractions
    calibration: str = ""  # post hoc: the calibration (TEST.CALIBRATION.METHOD) applied to `source`'s model
    values: Tuple[float, ...] = ()  # post hoc: the grid of its swept key, chosen on the held-out split


def _parse(name: str, entry: dict) -> Method:
    unknown = set(entry) - _FIELDS
    if unknown:
        raise ValueError(f"method '{name}': unknown fields {sorted(unknown)}; valid fields: {sorted(_FIELDS)}")
    stage = str(entry.get("stage"))
    if stage not in STAGES:
        raise ValueError(f"method '{name}': stage must be one of {STAGES}, not {entry.get('stage')!r}")
    source = entry.get("from")
    if stage != "1" and not source:
        raise ValueError(f"method '{name}': a stage-{stage} method needs `from` (its stage-1 method)")
    schedule = entry.get("schedule")
    if stage == "2" and (schedule is None or len(schedule) != 3):
        raise ValueError(f"method '{name}': stage 2 needs `schedule: [length, step1, step2]`")
    if stage == "posthoc" and not (entry.get("calibration") and entry.get("values")):
        raise ValueError(f"method '{name}': a post-hoc method needs `calibration` (a TEST.CALIBRATION.METHOD) "
                         "and `values` (the grid of its swept key)")
    if entry.get("calibration"):
        get_calibration_class(entry["calibration"])  # an unknown name lists the registered ones
    return Method(
        name=name, stage=stage, config=dict(entry.get("config") or {}),
        baseline=entry.get("baseline", source), rfs=bool(entry.get("rfs", False)), cite=entry.get("cite", ""),
        source=source, schedule=tuple(schedule) if schedule else None, calibration=entry.get("calibration", ""),
        values=tuple(float(v) for v in entry.get("values") or ()),
    )


def load_methods(path: str = DEFAULT_METHODS_FILE) -> Dict[str, Method]:
    """{name: Method} in file order; checks that every `from` / `baseline` names an entry and that a
    `from` is a stage-1 method."""
    with open(path) as f:
        entries = yaml.safe_load(f)
    methods = {name: _parse(name, entry or {}) for name, entry in entries.items()}
    for m in methods.values():
        for ref, what in ((m.source, "from"), (m.baseline, "baseline")):
            if ref is not None and ref not in methods:
                raise ValueError(f"method '{m.name}': {what} '{ref}' is not in {path}")
        if m.source is not None and methods[m.source].stage != "1":
            raise ValueError(f"method '{m.name}': from '{m.source}' must be a stage-1 method")
    return methods


def select(methods: Dict[str, Method], names: Sequence[str]) -> List[Method]:
    """The named methods plus the stage-1 methods they start from, stage 1 first.

    An unknown name fails with the list of valid names.
    """
    unknown = [n for n in names if n not in methods]
    if unknown:
        raise KeyError(f"Unknown benchmark method(s) {unknown}. Valid methods: {', '.join(methods)}")
    wanted = set(names) | {methods[n].source for n in names if methods[n].source}
    chosen = [m for m in methods.values() if m.name in wanted]
    return sorted(chosen, key=lambda m: m.stage != "1")

"""One benchmark cell: a training or evaluation run, cached under a key of its full config.

A cell is a folder ``{cache}/{label}-{key[:12]}`` holding ``config.yaml`` (the complete config the
run used), the run's own outputs and, once finished, ``result.json``. The key is the SHA-256 of the
cell's kind, every config value that differs from lt_det's defaults (``get_cfg()`` +
``add_lt_det_config``; the output folder and the weights path taken out), the generator parameters
of the data, and the keys of the cells it starts from. So a cell is reused exactly when nothing it
sets changed, a killed run resumes in its own folder (``train_net.py --resume`` from the last
checkpoint) and a finished one is not re-run.

Keying on the values a cell sets, not on the whole dump, keeps the cache valid when a new loss
declares its own config keys (with defaults): finished cells do not re-train because the registry
grew. The price: a changed default (like any code change) is not seen by the key; start a fresh
``--cache`` after such a change.

Each run is a separate process (``train_net.py`` / ``tools/tau_norm.py``), one after another: the
training state of one cannot leak into the next, and a diverging run cannot take the table down.
"""
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RESULT = "result.json"
# What detectron2's trainer raises on a non-finite loss (detectron2/engine/train_loop.py).
DIVERGENCE_MARKERS = ("FloatingPointError", "Loss became infinite or NaN")


def cell_key(kind: str, config: str, data: Dict, deps: Sequence[str] = ()) -> str:
    """SHA-256 hex of everything a cell's result depends on (paths excluded)."""
    payload = json.dumps({"kind": kind, "config": config, "data": data, "deps": list(deps)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _leaves(node, prefix: str = "") -> Dict[str, object]:
    out = {}
    for k, v in node.items():
        if isinstance(v, dict):
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def default_config():
    """lt_det's default config: detectron2's ``get_cfg()`` with every lt_det key added."""
    from detectron2.config import get_cfg

    from ..config import add_lt_det_config

    return add_lt_det_config(get_cfg())


def config_identity(cfg, defaults=None) -> str:
    """The config values that differ from ``defaults`` (default: :func:`default_config`), without
    OUTPUT_DIR and MODEL.WEIGHTS (a dependency enters the key as its key), as sorted JSON."""
    base = _leaves(defaults if defaults is not None else default_config())
    changed = {k: v for k, v in _leaves(cfg).items()
               if k not in ("OUTPUT_DIR", "MODEL.WEIGHTS") and (k not in base or base[k] != v)}
    return json.dumps(changed, sort_keys=True, default=repr)


class Cell:
    """A cell's folder and its cached result."""

    def __init__(self, cache_dir: str, label: str, key: str):
        self.label, self.key = label, key
        self.dir = os.path.join(cache_dir, f"{label}-{key[:12]}")

    @property
    def result_path(self) -> str:
        return os.path.join(self.dir, RESULT)

    def result(self) -> Optional[Dict]:
        """The finished cell's result, or None if it has not finished."""
        if not os.path.isfile(self.result_path):
            return None
        with open(self.result_path) as f:
            return json.load(f)

    def write_result(self, result: Dict) -> Dict:
        result = {"key": self.key, "label": self.label, **result}
        tmp = self.result_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=1, allow_nan=True)
        os.replace(tmp, self.result_path)  # atomic: a killed run never leaves half a result
        return result

    def write_config(self, cfg) -> str:
        os.makedirs(self.dir, exist_ok=True)
        path = os.path.join(self.dir, "config.yaml")
        with open(path, "w") as f:
            f.write(cfg.dump())
        return path


class RunFailed(RuntimeError):
    def __init__(self, message: str, log: str, diverged: bool):
        super().__init__(message)
        self.log, self.diverged = log, diverged


def run_logged(args: List[str], log: str, env: Optional[Dict[str, str]] = None) -> float:
    """Runs ``python args...`` from the repository root, appending its output to ``log``.

    Returns: wall seconds. Raises :class:`RunFailed` (``diverged`` when the log shows detectron2's
    non-finite-loss error) if it exits non-zero.
    """
    start = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(args)}\n")
        f.flush()
        proc = subprocess.run([sys.executable] + args, cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                              env={**os.environ, **(env or {})})
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        with open(log) as f:
            tail = f.read()[-20000:]
        diverged = any(m in tail for m in DIVERGENCE_MARKERS)
        raise RunFailed(f"{args[0]} exited with {proc.returncode} (log: {log})", log, diverged)
    return seconds


def flatten_metrics(results: Dict) -> Dict[str, float]:
    """detectron2's nested results {task: {metric: value}} -> {"task/metric": value}."""
    flat = {}
    for task, metrics in results.items():
        for name, value in metrics.items():
            flat[f"{task}/{name}"] = float(value) if value is not None else math.nan
    return flat

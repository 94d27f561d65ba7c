"""Clean layering: importing lt_det has no side effects, and no package imports a higher layer."""
import ast
import json
import os
import subprocess
import sys

import pytest

from tiny_dataset import REPO

# Layers from the bottom up: data <- losses, evaluation <- modeling <- engine. Each package may
# import only the layers below it.
MUST_NOT_IMPORT = {
    "data": ("losses", "evaluation", "modeling", "engine", "benchmark"),
    "losses": ("evaluation", "modeling", "engine", "benchmark"),
    "evaluation": ("losses", "modeling", "engine", "benchmark"),
    "modeling": ("evaluation", "engine", "benchmark"),  # Fixed AP's inference mode lives in modeling
    "engine": ("benchmark",),  # the benchmark drives training, never the other way
}

_STATE_BEFORE_AND_AFTER_IMPORTS = r"""
import importlib, json, pkgutil
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog

def state():
    return {"datasets": sorted(DatasetCatalog.list()), "metadata": sorted(MetadataCatalog.list()),
            "numpy_aliases": [a for a in ("int", "float") if hasattr(np, a)]}

before = state()
import lt_det
for module in pkgutil.walk_packages(lt_det.__path__, "lt_det."):
    importlib.import_module(module.name)
after_import = state()
from lt_det.builtin import setup_environment
setup_environment()
print(json.dumps({"before": before, "after_import": after_import, "after_setup": state()}))
"""


def test_importing_lt_det_registers_and_patches_nothing():
    """Every lt_det module (lt_det.losses and lt_det.data included) is imported in a fresh
    interpreter: no dataset or metadata appears and numpy gains no alias until the entry point's
    ``setup_environment()``, which does both."""
    proc = subprocess.run([sys.executable, "-c", _STATE_BEFORE_AND_AFTER_IMPORTS], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    states = json.loads(proc.stdout.strip().splitlines()[-1])
    assert states["after_import"] == states["before"]
    after_setup = states["after_setup"]
    assert {"synthetic_lt_train", "synthetic_lt_val"} <= set(after_setup["datasets"])
    assert after_setup["numpy_aliases"] == ["int", "float"]


def _imported_modules(path: str, module: str):
    """Absolute names of everything a source file imports (function-level imports included);
    ``from X import y`` yields both X and X.y, since y may be a submodule."""
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            source = ".".join(p for p in (base, node.module) if p)
            yield source
            yield from (f"{source}.{alias.name}" for alias in node.names)


def _layer_violations(layer: str):
    forbidden = tuple(f"lt_det.{name}" for name in MUST_NOT_IMPORT[layer])
    root = os.path.join(REPO, "lt_det", layer)
    for folder, _, files in os.walk(root):
        for file in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(folder, file)
            module = os.path.relpath(path, REPO)[: -len(".py")].replace(os.sep, ".").removesuffix(".__init__")
            for name in _imported_modules(path, module):
                if name in forbidden or name.startswith(tuple(f + "." for f in forbidden)):
                    yield f"{os.path.relpath(path, REPO)} imports {name}"


@pytest.mark.parametrize("layer", sorted(MUST_NOT_IMPORT))
def test_no_package_imports_a_higher_layer(layer):
    assert list(_layer_violations(layer)) == []

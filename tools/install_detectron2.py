#!/usr/bin/env python
"""Install detectron2 into the current Python environment (run with the venv's python).

detectron2 is not on the package registry under its own name. In order of preference:

1. The upstream source (``$LT_DET_DETECTRON2_SOURCE``, default detectron2's git main), built with
   its C++/CUDA extension, where the machine can reach it.
2. Otherwise the registry's ``pb1-detectron2==0.6`` source release, whose ``detectron2/`` Python
   files are identical to upstream's v0.6 tag but which lacks the C++ sources: we install its
   Python part only (setup.py's ``ext_modules`` emptied), with a pure-Python ``detectron2/_C.py``
   (:data:`STAND_IN_C`) in place of the compiled extension.

Does nothing when ``detectron2.layers`` already imports (it imports ``detectron2._C`` at top
level, so this also tells a complete install from one that lacks the extension and its stand-in;
such an install is uninstalled and replaced). Needs torch installed first (detectron2's setup.py
imports it).
"""
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

UPSTREAM = os.environ.get(
    "LT_DET_DETECTRON2_SOURCE", "git+https://github.com/facebookresearch/detectron2.git"
)
REGISTRY_RELEASE = "pb1-detectron2==0.6"
# detectron2 0.6's install_requires, less what it pins to stale versions for its own tooling
# (black==21.4b2, only used by its lazy-config dumper) and py2 leftovers (future, pydot).
RUNTIME_DEPS = [
    "termcolor>=1.1", "yacs>=0.1.8", "tabulate", "cloudpickle", "tqdm>4.29.0",
    "tensorboard", "fvcore>=0.1.5,<0.1.6", "iopath>=0.1.7,<0.1.10", "omegaconf>=2.1",
    "hydra-core>=1.1", "matplotlib", "pycocotools>=2.0.2",
    "Pillow>=7.1,<10",  # 0.6 uses Image.LINEAR, removed in Pillow 10
]
PROBE = "detectron2.layers"

# detectron2/_C.py of the Python-only install: the interface of 0.6's compiled extension
# (detectron2/layers/csrc/vision.cpp, its pybind11 module and its TORCH_LIBRARY block).
STAND_IN_C = '''\
"""Stand-in for detectron2's compiled C++/CUDA extension, written by lt_det's
tools/install_detectron2.py: this detectron2 was installed from a release without C++ sources.

It has the extension's interface (detectron2 0.6's layers/csrc/vision.cpp) so that
``import detectron2.layers`` works. The build queries answer that nothing was compiled; every op
raises a RuntimeError that names it and says how to get it.
"""
import torch

_FIX = (
    "this detectron2 was installed without its compiled C++/CUDA extension detectron2._C (the "
    "registry's 0.6 release has no C++ sources). Rotated boxes, deformable convolution on CUDA "
    "and the C++ COCO evaluator need it; Mask R-CNN / Faster R-CNN on LVIS do not. To use them, "
    "build detectron2 from source: `pip uninstall -y pb1-detectron2 && pip install "
    "--no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git'`."
)


def _unavailable(op):
    def op_unavailable(*args, **kwargs):
        raise RuntimeError(f"detectron2 op '{op}' is unavailable: {_FIX}")

    op_unavailable.__name__ = op
    return op_unavailable


def get_compiler_version():
    return "none (detectron2._C is a pure-Python stand-in)"


def get_cuda_version():
    return "not available"  # the extension's own answer when built without CUDA


def has_cuda():
    return False


box_iou_rotated = _unavailable("box_iou_rotated")
deform_conv_forward = _unavailable("deform_conv_forward")
deform_conv_backward_input = _unavailable("deform_conv_backward_input")
deform_conv_backward_filter = _unavailable("deform_conv_backward_filter")
modulated_deform_conv_forward = _unavailable("modulated_deform_conv_forward")
modulated_deform_conv_backward = _unavailable("modulated_deform_conv_backward")
nms_rotated = _unavailable("nms_rotated")
roi_align_rotated_forward = _unavailable("roi_align_rotated_forward")
roi_align_rotated_backward = _unavailable("roi_align_rotated_backward")
COCOevalAccumulate = _unavailable("COCOevalAccumulate")
COCOevalEvaluateImages = _unavailable("COCOevalEvaluateImages")
InstanceAnnotation = _unavailable("InstanceAnnotation")
ImageEvaluation = _unavailable("ImageEvaluation")

# layers/nms.py calls rotated NMS as torch.ops.detectron2.nms_rotated, which the extension
# registers with TORCH_LIBRARY; without this, the call fails with an opaque missing-op error.
_LIBRARY = torch.library.Library("detectron2", "DEF")
_LIBRARY.define("nms_rotated(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_LIBRARY.impl("nms_rotated", nms_rotated, "CompositeExplicitAutograd")
'''


def pip(*args: str, check: bool = True) -> int:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=check).returncode


def importable(module: str) -> bool:
    """Whether ``module`` imports in a fresh interpreter of this environment."""
    check = subprocess.run([sys.executable, "-c", f"import {module}"], stderr=subprocess.DEVNULL)
    return check.returncode == 0


def install_registry_release() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
             "--no-binary", ":all:", "--no-build-isolation", "-d", tmp, REGISTRY_RELEASE],
            check=True,
        )
        (sdist,) = Path(tmp).glob("*.tar.gz")
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        (src,) = [p for p in Path(tmp).iterdir() if p.is_dir()]
        setup_py = src / "setup.py"
        text, n = re.subn(r"ext_modules=get_extensions\(\),", "ext_modules=[],", setup_py.read_text())
        if n != 1:
            raise RuntimeError(f"{REGISTRY_RELEASE}: setup.py layout changed; cannot drop ext_modules")
        setup_py.write_text(text)
        (src / "detectron2" / "_C.py").write_text(STAND_IN_C)
        pip("install", *RUNTIME_DEPS)
        pip("install", "--no-deps", "--no-build-isolation", str(src))


def main() -> None:
    if importable(PROBE):
        print("detectron2 already installed")
        return
    if importable("detectron2"):
        print(f"detectron2 is installed but {PROBE} does not import (no detectron2._C): replacing it")
        pip("uninstall", "-y", "detectron2", "pb1-detectron2")
    if pip("install", "--no-build-isolation", UPSTREAM, check=False) == 0 and importable(PROBE):
        return
    print(f"upstream detectron2 unavailable here; installing {REGISTRY_RELEASE} (Python only)")
    install_registry_release()
    if not importable(PROBE):
        sys.exit("detectron2 installation failed")


if __name__ == "__main__":
    main()

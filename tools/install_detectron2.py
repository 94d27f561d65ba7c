#!/usr/bin/env python
"""Install detectron2 into the current Python environment (run with the venv's python).

detectron2 is not on the package registry under its own name. Three ways, chosen by the arguments:

* no argument: the upstream source (``$LT_DET_DETECTRON2_SOURCE``, default detectron2's git main),
  built with its C++/CUDA extension, where the machine can reach it; otherwise the registry's
  release (``--release``);
* ``--release``: the registry's ``pb1-detectron2==0.6`` source release, whose ``detectron2/``
  Python files are identical to upstream's v0.6 tag but which lacks the C++ sources: its Python
  part only (setup.py's ``ext_modules`` emptied), with a pure-Python ``detectron2/_C.py``
  (:data:`STAND_IN_C`) in place of the compiled extension;
* ``--source SRC``: detectron2 from ``SRC``, a git URL, a source folder or a ``.tar.gz`` of one
  (such as ``third_party/detectron2-main-02b5c4e.tar.gz``, a snapshot of detectron2 main), built
  with its extension, or with ``--python-only`` without it (the same stand-in as the release's).

Does nothing when detectron2 is already installed with its compiled extension or the stand-in
(``detectron2._C`` imports). An install that lacks both is uninstalled and replaced. Needs torch
installed first (detectron2's setup.py imports it).
"""
import argparse
import os
import re
import shutil
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
# detectron2 0.6's layers import the extension at top level; main's only try to, so the probe is the
# extension itself.
PROBE = "detectron2._C"

# detectron2/_C.py of a Python-only install: the interface of the compiled extension
# (detectron2/layers/csrc/vision.cpp, its pybind11 module and its TORCH_LIBRARY block; the same in
# 0.6 and main).
STAND_IN_C = '''\
"""Stand-in for detectron2's compiled C++/CUDA extension, written by lt_det's
tools/install_detectron2.py: this detectron2 was installed without compiling its C++ sources.

It has the extension's interface (detectron2's layers/csrc/vision.cpp) so that
``import detectron2.layers`` works. The build queries answer that nothing was compiled; every op
raises a RuntimeError that names it and says how to get it.
"""
import torch

_FIX = (
    "this detectron2 was installed without its compiled C++/CUDA extension detectron2._C (the "
    "registry's 0.6 release has no C++ sources; a Python-only install skips them). Rotated boxes, "
    "deformable convolution on CUDA and the C++ COCO evaluator need it; Mask R-CNN / Faster "
    "R-CNN on LVIS do not. To use them, build detectron2 from source: `pip uninstall -y "
    "detectron2 pb1-detectron2 && pip install --no-build-isolation "
    "'git+https://github.com/facebookresearch/detectron2.git'`."
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

# The rotated-box ops that the extension registers with TORCH_LIBRARY (vision.cpp): detectron2 0.6
# calls nms_rotated through torch.ops.detectron2, main calls all four that way. Without these
# definitions the calls fail with an opaque missing-op error instead of the one above.
_LIBRARY = torch.library.Library("detectron2", "DEF")
for _schema in (
    "nms_rotated(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "box_iou_rotated(Tensor boxes1, Tensor boxes2) -> Tensor",
    "roi_align_rotated_forward(Tensor input, Tensor rois, float spatial_scale, int pooled_height, "
    "int pooled_width, int sampling_ratio) -> Tensor",
    "roi_align_rotated_backward(Tensor grad, Tensor rois, float spatial_scale, int pooled_height, "
    "int pooled_width, int batch_size, int channels, int height, int width, int sampling_ratio) "
    "-> Tensor",
):
    _name = _schema.split("(")[0]
    _LIBRARY.define(_schema)
    _LIBRARY.impl(_name, globals()[_name], "CompositeExplicitAutograd")
'''


def pip(*args: str, check: bool = True) -> int:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=check).returncode


def importable(module: str) -> bool:
    """Whether ``module`` imports in a fresh interpreter of this environment."""
    check = subprocess.run([sys.executable, "-c", f"import {module}"], stderr=subprocess.DEVNULL)
    return check.returncode == 0


def python_only(src: Path) -> None:
    """Makes the detectron2 source tree ``src`` install without compiling its extension."""
    setup_py = src / "setup.py"
    text, n = re.subn(r"ext_modules=get_extensions\(\),", "ext_modules=[],", setup_py.read_text())
    if n != 1:
        raise RuntimeError(f"{setup_py}: setup.py layout changed; cannot drop ext_modules")
    setup_py.write_text(text)
    (src / "detectron2" / "_C.py").write_text(STAND_IN_C)


def unpacked(archive: Path, into: str) -> Path:
    """The one top-level folder of the source archive ``archive``, extracted under ``into``."""
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    (src,) = [p for p in Path(into).iterdir() if p.is_dir()]
    return src


def install_registry_release() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
             "--no-binary", ":all:", "--no-build-isolation", "-d", tmp, REGISTRY_RELEASE],
            check=True,
        )
        (sdist,) = Path(tmp).glob("*.tar.gz")
        src = unpacked(sdist, tmp)
        python_only(src)
        pip("install", *RUNTIME_DEPS)
        pip("install", "--no-deps", "--no-build-isolation", str(src))


def install_local_source(source: Path, without_extension: bool) -> None:
    """detectron2 from a source folder or ``.tar.gz``, copied first (the build writes into it)."""
    with tempfile.TemporaryDirectory() as tmp:
        if source.is_dir():
            src = Path(tmp) / source.name
            shutil.copytree(source, src)
        else:
            src = unpacked(source, tmp)
        if without_extension:
            python_only(src)
        pip("install", "--no-build-isolation", str(src))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--release", action="store_true",
                        help=f"the registry's {REGISTRY_RELEASE} (Python only)")
    choice.add_argument("--source", help="a git URL, a source folder or a .tar.gz of detectron2")
    parser.add_argument("--python-only", action="store_true",
                        help="with --source: install without compiling detectron2._C")
    args = parser.parse_args()
    if args.python_only and not args.source:
        parser.error("--python-only needs --source")

    if importable(PROBE):
        print("detectron2 already installed")
        return
    if importable("detectron2"):
        print(f"detectron2 is installed without {PROBE} (no compiled extension): replacing it")
        pip("uninstall", "-y", "detectron2", "pb1-detectron2")
    if args.release:
        install_registry_release()
    elif args.source and Path(args.source).exists():
        install_local_source(Path(args.source), args.python_only)
    elif args.source:
        if args.python_only:
            parser.error("--python-only needs a local source folder or .tar.gz")
        pip("install", "--no-build-isolation", args.source)
    elif pip("install", "--no-build-isolation", UPSTREAM, check=False) != 0 or not importable(PROBE):
        print(f"upstream detectron2 unavailable here; installing {REGISTRY_RELEASE} (Python only)")
        install_registry_release()
    if not importable(PROBE):
        sys.exit("detectron2 installation failed")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Install detectron2 into the current Python environment (run with the venv's python).

detectron2 is not on the package registry under its own name. In order of preference:

1. The upstream source (``$LT_DET_DETECTRON2_SOURCE``, default detectron2's git main), built with
   its C++/CUDA extension, where the machine can reach it.
2. Otherwise the registry's ``pb1-detectron2==0.6`` source release, whose ``detectron2/`` Python
   files are identical to upstream's v0.6 tag but which lacks the C++ sources: we install its
   Python part only (setup.py's ``ext_modules`` emptied). ``lt_det.compat`` then makes a missing
   ``detectron2._C`` fail at the point of use with a clear message instead of at import.

Does nothing when detectron2 already imports. Needs torch installed first (detectron2's setup.py
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


def pip(*args: str, check: bool = True) -> int:
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *args]
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=check).returncode


def detectron2_importable() -> bool:
    check = subprocess.run([sys.executable, "-c", "import detectron2"], stderr=subprocess.DEVNULL)
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
        pip(*RUNTIME_DEPS)
        pip("--no-deps", "--no-build-isolation", str(src))


def main() -> None:
    if detectron2_importable():
        print("detectron2 already installed")
        return
    if pip("--no-build-isolation", UPSTREAM, check=False) == 0 and detectron2_importable():
        return
    print(f"upstream detectron2 unavailable here; installing {REGISTRY_RELEASE} (Python only)")
    install_registry_release()
    if not detectron2_importable():
        sys.exit("detectron2 installation failed")


if __name__ == "__main__":
    main()

"""tools/install_detectron2.py: the arguments it refuses, and the Python-only preparation of a
source tree (the extension build dropped, the stand-in extension written)."""
import importlib.util
import subprocess
import sys
import tarfile

import pytest

from tiny_dataset import REPO

INSTALLER = f"{REPO}/tools/install_detectron2.py"
spec = importlib.util.spec_from_file_location("install_detectron2", INSTALLER)
install_detectron2 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install_detectron2)


@pytest.mark.parametrize("args, error", [
    (["--python-only"], "--python-only needs --source"),
    (["--release", "--source", "x"], "not allowed with argument"),
])
def test_contradictory_arguments_are_refused(args, error):
    proc = subprocess.run([sys.executable, INSTALLER, *args], capture_output=True, text=True)
    assert proc.returncode == 2 and error in proc.stderr


def test_python_only_drops_the_extension_and_writes_the_stand_in(tmp_path):
    src = tmp_path / "detectron2-src"
    (src / "detectron2").mkdir(parents=True)
    (src / "setup.py").write_text("setup(\n    name='detectron2',\n    ext_modules=get_extensions(),\n)\n")
    archive = tmp_path / "src.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname=src.name)

    unpacked = install_detectron2.unpacked(archive, str(tmp_path / "out"))
    assert unpacked.name == src.name
    install_detectron2.python_only(unpacked)
    assert "ext_modules=[]," in (unpacked / "setup.py").read_text()
    assert (unpacked / "detectron2" / "_C.py").read_text() == install_detectron2.STAND_IN_C


def test_python_only_refuses_a_setup_py_it_does_not_know(tmp_path):
    (tmp_path / "detectron2").mkdir()
    (tmp_path / "setup.py").write_text("setup(name='detectron2')\n")
    with pytest.raises(RuntimeError, match="setup.py layout changed"):
        install_detectron2.python_only(tmp_path)

"""Shared fixtures: a tiny synthetic LVIS-format dataset, generated once per test session.

The test session is an entry point like train_net.py: it calls lt_det's set-up once. The tiny set
is registered as ``synthetic_lt_{train,val}`` by pointing ``DETECTRON2_DATASETS`` at its parent
folder, exactly as a user's run finds the demo set; subprocesses inherit it.
"""
import json
import os
import sys

import pytest

from lt_det.builtin import setup_environment
from lt_det.data.synthetic import generate
from tiny_dataset import QUICK_CONFIG, REPO, TINY, TINY_NUM_CLASSES


def pytest_configure(config):
    setup_environment()


@pytest.fixture(scope="session")
def tiny_dataset_root(tmp_path_factory):
    """Folder holding ``synthetic_lt/`` (the tiny set); DETECTRON2_DATASETS points at it."""
    root = tmp_path_factory.mktemp("datasets")
    generate(str(root / "synthetic_lt"), TINY)
    os.environ["DETECTRON2_DATASETS"] = str(root)
    from lt_det.data import register_synthetic_lt
    from detectron2.data import DatasetCatalog, MetadataCatalog

    for split in ("train", "val"):  # setup_environment registered the demo path
        name = f"synthetic_lt_{split}"
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
    register_synthetic_lt(str(root / "synthetic_lt"))
    return root


@pytest.fixture
def quick_cfg(tiny_dataset_root, tmp_path):
    """``quick_cfg(*opts)``: the instant-test config on the tiny set, built as train_net.py
    builds it, writing to a fresh tmp folder, with extra ``KEY VALUE`` overrides."""
    from detectron2.config import get_cfg

    from lt_det.config import add_lt_det_config

    def make(*opts, config_file=QUICK_CONFIG):
        cfg = get_cfg()
        add_lt_det_config(cfg)
        cfg.merge_from_file(config_file)
        cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.ROI_HEADS.NUM_CLASSES", TINY_NUM_CLASSES,
                             "OUTPUT_DIR", str(tmp_path / "out"), *opts])
        return cfg

    return make


@pytest.fixture
def train_net(tiny_dataset_root):
    """``train_net(*args)``: runs train_net.py in a subprocess on the tiny set; returns its output."""
    import subprocess

    def run(*args, timeout=600):
        proc = subprocess.run([sys.executable, os.path.join(REPO, "train_net.py"), *args], cwd=REPO,
                              capture_output=True, text=True, timeout=timeout)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output[-5000:]
        return output

    return run


@pytest.fixture
def json_parses(monkeypatch):
    """Real paths of the files ``json.load`` parses from now on, in order."""
    parses, load = [], json.load

    def recording_load(f, *args, **kwargs):
        parses.append(os.path.realpath(f.name))
        return load(f, *args, **kwargs)

    monkeypatch.setattr(json, "load", recording_load)
    return parses

"""The explicit set-up of a process that runs lt_det: compatibility shims and built-in datasets.

Importing lt_det registers nothing and patches nothing. An entry point (``train_net.py``, a tool,
the test session) calls :func:`setup_environment` once per process, before building a model or a
data loader, as detectron2's ``data/datasets/builtin.py`` registers detectron2's own names. It

* restores numpy's removed aliases that detectron2 0.6 and lvis-api 0.5.3 still use
  (:func:`lt_det.compat.restore_numpy_aliases`);
* routes detectron2's built-in LVIS names (``lvis_v1_train``, ...) through lt_det's LVIS-format
  loader, which keeps image-level labels and writes the class statistics;
* registers the generated synthetic set as ``synthetic_lt_{train,val}`` under
  ``$DETECTRON2_DATASETS/synthetic_lt`` (default ``datasets/``, relative to the working directory
  as detectron2's own built-ins are), and the benchmark's sets
  (:mod:`lt_det.benchmark.data`) next to it;
* registers COCO-LT (:mod:`lt_det.data.coco_lt`) as ``coco_lt_{train,val}``: the jsons
  ``coco_lt/coco_lt_{train,val}.json`` that ``tools/build_coco_lt.py`` writes, the images in
  ``coco/`` (``train2017/``, ``val2017/``), both under the same root;
* registers the held-out splits that ``tools/split_heldout.py`` carves from LVIS train
  (:mod:`lt_det.data.heldout`) as ``lvis_v1_{train_minus_heldout,heldout}`` and
  ``lvis_v0.5_{train_minus_heldout,heldout}``: the jsons in ``lvis/``, the images in ``coco/``.
"""
import os

from .benchmark.data import register_benchmark_datasets
from .compat import restore_numpy_aliases
from .data.coco_lt import register_coco_lt
from .data.datasets import register_synthetic_lt, reregister_builtin_lvis
from .data.heldout import register_heldout_split

__all__ = ["register_all_builtin", "setup_environment"]


def register_all_builtin(root: str) -> None:
    """Routes detectron2's LVIS names through lt_det's loader and registers the synthetic sets,
    COCO-LT and LVIS's held-out splits under ``root`` (names registered already are kept)."""
    reregister_builtin_lvis()
    register_synthetic_lt(os.path.join(root, "synthetic_lt"))
    register_benchmark_datasets(root)
    register_coco_lt(os.path.join(root, "coco_lt"), os.path.join(root, "coco"))
    for lvis in ("lvis_v1", "lvis_v0.5"):
        register_heldout_split(os.path.join(root, "lvis"), os.path.join(root, "coco"), lvis)


def setup_environment() -> None:
    """Applies the compatibility shims and registers the built-in datasets (idempotent)."""
    restore_numpy_aliases()
    register_all_builtin(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")))

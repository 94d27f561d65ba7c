"""The benchmark's generated datasets and their registration.

* ``synthetic_lt_bench_{train,val,heldout}``: the embedded long-tailed set
  (:class:`~lt_det.data.synthetic.SyntheticLTConfig` defaults: 40 classes, 14 rare / 13 common /
  13 frequent, the top class in 400 training images), with a class-balanced validation split of 20
  instances per class (each group's AP rests on 260-280 instances) and a held-out split of 10 per
  class for choosing test-time parameters (τ), never the validation split.
* ``synthetic_pretrain_train``: 48 classes of other shapes and colours, 60 images each, for
  pretraining the backbone (nothing in common with the benchmark's classes).
"""
import os

from ..data.datasets import register_synthetic_lt
from ..data.synthetic import SyntheticLTConfig, generate, is_up_to_date

BENCH_NAME = "synthetic_lt_bench"
PRETRAIN_NAME = "synthetic_pretrain"
BENCH_DATA = SyntheticLTConfig(val_instances_per_class=20, heldout_instances_per_class=10)
PRETRAIN_DATA = SyntheticLTConfig(num_classes=48, palette="pretrain", profile="uniform", max_images_per_class=60,
                                  val_instances_per_class=0, seed=1)
HELDOUT_SPLIT = f"{BENCH_NAME}_heldout"


def register_benchmark_datasets(root: str) -> None:
    """Registers the benchmark's sets under ``root/{synthetic_lt_bench,synthetic_pretrain}``."""
    register_synthetic_lt(os.path.join(root, BENCH_NAME), BENCH_NAME, ("train", "val", "heldout"))
    register_synthetic_lt(os.path.join(root, PRETRAIN_NAME), PRETRAIN_NAME, ("train",))


def ensure_benchmark_datasets(root: str, bench: SyntheticLTConfig = BENCH_DATA,
                              pretrain: SyntheticLTConfig = PRETRAIN_DATA) -> None:
    """Generates the benchmark's sets under ``root`` unless they are up to date (deterministic)."""
    for name, cfg in ((BENCH_NAME, bench), (PRETRAIN_NAME, pretrain)):
        out = os.path.join(root, name)
        if not is_up_to_date(out, cfg, name):
            generate(out, cfg, name)

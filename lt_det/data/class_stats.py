"""Per-class training statistics: the single source every long-tail component reads.

Shorthand: K = number of foreground classes, indexed by contiguous id 0..K-1 (detectron2's
convention; LVIS category ids are 1-based and may have gaps).

A registered dataset carries its statistics in ``MetadataCatalog`` (written by
:func:`lt_det.data.datasets.register_lvis_format`):

* ``class_statistics``: list of K dicts sorted by category id, each
  ``{"id", "name", "image_count", "instance_count", "frequency"}``. (The same records are also
  written as ``class_image_count`` where that key is free: detectron2 main reads
  ``{"id", "image_count"}`` from it for its federated loss weights, and sets it, without instance
  counts or groups, in its built-in LVIS v1 metadata; hence lt_det's own key.)
* ``num_annotated_images``: M, the number of training images with at least one annotation
  (the denominator of the image frequency ``f_j = image_count_j / M``; LVIS v1: 99,388).
* ``num_all_images``: every image of the training json, annotated or not (LVIS v1: 100,170), the
  denominator EQL's paper names ("the image number of the entire dataset").
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import numpy as np
import torch

from detectron2.data import MetadataCatalog

from .datasets import ensure_class_stats

FREQUENCY_GROUPS = ("r", "c", "f")


@dataclass(frozen=True)
class ClassStats:
    """Statistics of K foreground classes, all arrays of shape (K,), ordered by contiguous id."""

    image_count: np.ndarray  # int64: training images containing class j
    instance_count: np.ndarray  # int64: training instances of class j
    frequency: np.ndarray  # str: "r" / "c" / "f" (LVIS's rare / common / frequent)
    num_images: int  # M: training images with at least one annotation
    num_all_images: Optional[int] = None  # every training image, annotated or not (None: unknown)

    @property
    def num_classes(self) -> int:
        return len(self.image_count)

    @property
    def image_frequency(self) -> np.ndarray:
        """f_j = image_count_j / M, float64 (K,)."""
        return self.image_count / float(self.num_images)

    def image_frequency_over(self, images: str) -> np.ndarray:
        """f_j = image_count_j / M with M the "annotated" images (:attr:`image_frequency`) or "all"
        the images of the training set, float64 (K,).

        Raises:
            KeyError: "all" on statistics that do not know the number of images.
        """
        if images == "annotated":
            return self.image_frequency
        if images != "all":
            raise ValueError(f"image frequency over 'annotated' or 'all' images, got {images!r}")
        if self.num_all_images is None:
            raise KeyError("the training set's class statistics lack the number of all its images (metadata "
                           "'num_all_images', which lt_det.data.register_lvis_format sets from the json's images)")
        return self.image_count / float(self.num_all_images)

    def group_mask(self, group: str) -> np.ndarray:
        """Boolean (K,) mask of the classes in frequency group "r", "c" or "f"."""
        if group not in FREQUENCY_GROUPS:
            raise ValueError(f"Unknown frequency group {group!r}; expected one of {FREQUENCY_GROUPS}")
        return self.frequency == group

    def tensor(self, name: str, device=None, dtype=torch.float32) -> torch.Tensor:
        """One of the count arrays (or ``image_frequency``) as a tensor."""
        return torch.as_tensor(np.asarray(getattr(self, name), dtype=np.float64), dtype=dtype, device=device)

    @classmethod
    def from_records(cls, records: Sequence[dict], num_images: int,
                     num_all_images: Optional[int] = None) -> "ClassStats":
        """From ``class_statistics`` records (sorted by id as given)."""
        missing = [k for k in ("image_count", "instance_count", "frequency") if records and k not in records[0]]
        if missing:
            raise KeyError(f"class statistics records lack {missing}")
        return cls(
            image_count=np.array([r["image_count"] for r in records], dtype=np.int64),
            instance_count=np.array([r["instance_count"] for r in records], dtype=np.int64),
            frequency=np.array([r["frequency"] for r in records]),
            num_images=int(num_images),
            num_all_images=None if num_all_images is None else int(num_all_images),
        )


def get_class_stats(dataset_names: Union[str, List[str]]) -> ClassStats:
    """Class statistics of the (union of the) training datasets, read from their metadata.

    Several datasets must share one class list; their counts add up.

    Raises:
        KeyError: naming the dataset and the missing metadata key, and how to provide it.
    """
    if isinstance(dataset_names, str):
        dataset_names = [dataset_names]
    if len(dataset_names) == 0:
        raise ValueError("get_class_stats needs at least one dataset name (cfg.DATASETS.TRAIN is empty)")
    stats = []
    for name in dataset_names:
        ensure_class_stats(name)
        meta = MetadataCatalog.get(name)
        for key in ("class_statistics", "num_annotated_images"):
            if not hasattr(meta, key):
                raise KeyError(
                    f"Dataset '{name}' has no class statistics (metadata '{key}' is missing). "
                    "Register it with lt_det.data.register_lvis_format(name, json_file, image_root), "
                    "which reads image_count / instance_count / frequency from the json's "
                    "categories or counts them from its annotations."
                )
        stats.append(ClassStats.from_records(meta.class_statistics, meta.num_annotated_images,
                                             getattr(meta, "num_all_images", None)))
    first = stats[0]
    for name, s in zip(dataset_names[1:], stats[1:]):
        if s.num_classes != first.num_classes or not np.array_equal(s.frequency, first.frequency):
            raise ValueError(f"Dataset '{name}' has a different class list from '{dataset_names[0]}'")
    if len(stats) == 1:
        return first
    return ClassStats(
        image_count=sum(s.image_count for s in stats),
        instance_count=sum(s.instance_count for s in stats),
        frequency=first.frequency,
        num_images=sum(s.num_images for s in stats),
        num_all_images=None if any(s.num_all_images is None for s in stats) else sum(s.num_all_images for s in stats),
    )

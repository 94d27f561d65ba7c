"""Training samplers for long-tailed data: Repeat Factor Sampling (Gupta et al., LVIS, CVPR 2019)
and class-aware sampling (Shen et al., "Relay Backpropagation", ECCV 2016).

Shorthand: M = number of images in the dataset list the sampler indexes, K = number of
foreground classes (contiguous ids 0..K-1), t = repeat threshold.

* Repeat factor sampling (LVIS paper, App. B.2): ``r(c) = max(1, (t / f(c))^p)`` with
  ``f(c) = image_count_c / M`` and p = 1/2 (the paper, detectron2) or p = 1 ("linear", detectron2
  main's ``DATALOADER.REPEAT_SQRT = False``); ``r(I) = max_{c in I} r(c)``. The per-image factors
  feed detectron2's own :class:`RepeatFactorTrainingSampler` (stochastic rounding per epoch).
* Class-aware sampling (Shen et al. 2016, used by cRT): draw a class uniformly, then an image
  containing it uniformly; both draws i.i.d. Every image I therefore has probability
  ``P(I) = (1 / K') * sum_{c in I} 1 / image_count_c``, K' = number of classes with an image.
"""
import itertools
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data.sampler import Sampler

from detectron2.utils import comm

__all__ = [
    "category_repeat_factors",
    "image_repeat_factors",
    "class_to_image_indices",
    "ClassAwareSampler",
]


def _image_category_sets(dataset_dicts: Sequence[dict]) -> List[set]:
    return [{ann["category_id"] for ann in d.get("annotations", ())} for d in dataset_dicts]


def category_repeat_factors(image_count, num_images: int, repeat_thresh: float, sqrt: bool = True) -> np.ndarray:
    """Category-level repeat factors ``r(c) = max(1, (t / f(c))^p)``, p = 1/2 if ``sqrt`` else 1.

    Args:
        image_count: (K,) number of images containing each class.
        num_images: M, the denominator of ``f(c) = image_count_c / M``.
        repeat_thresh: t. Classes with ``f(c) >= t`` are not repeated.
        sqrt: square-root (the LVIS paper) or linear ratio.

    Returns:
        float64 (K,). A class that occurs in no image gets 1 (no image can carry its factor).
    """
    image_count = np.asarray(image_count, dtype=np.float64)
    if num_images <= 0:
        raise ValueError(f"num_images must be positive, got {num_images}")
    if repeat_thresh < 0:
        raise ValueError(f"repeat threshold t must be >= 0, got {repeat_thresh}")
    ratio = np.divide(repeat_thresh * num_images, image_count, out=np.ones_like(image_count), where=image_count > 0)
    return np.maximum(1.0, np.sqrt(ratio) if sqrt else ratio)


def image_repeat_factors(dataset_dicts: Sequence[dict], repeat_thresh: float, sqrt: bool = True) -> torch.Tensor:
    """Per-image repeat factors ``r(I) = max_{c in I} r(c)``, counted on exactly ``dataset_dicts``.

    Class frequencies come from the list the sampler will index (after detectron2's empty-image
    filter), not from a json's summary, so M = ``len(dataset_dicts)`` as in detectron2. With
    ``sqrt=True`` this equals detectron2's ``repeat_factors_from_category_frequency``.

    Returns:
        float32 (M,), ready for :class:`detectron2.data.samplers.RepeatFactorTrainingSampler`.
    """
    category_sets = _image_category_sets(dataset_dicts)
    category_ids = sorted(set().union(*category_sets))
    position = {c: i for i, c in enumerate(category_ids)}
    image_count = np.zeros(len(category_ids), dtype=np.int64)
    for cats in category_sets:
        image_count[[position[c] for c in cats]] += 1
    rep = category_repeat_factors(image_count, len(dataset_dicts), repeat_thresh, sqrt)
    factors = [max((rep[position[c]] for c in cats), default=1.0) for cats in category_sets]
    return torch.tensor(factors, dtype=torch.float32)


def class_to_image_indices(dataset_dicts: Sequence[dict]) -> List[List[int]]:
    """For every category id that occurs in ``dataset_dicts`` (ascending), the sorted indices of
    the images that contain it."""
    index = {}
    for i, cats in enumerate(_image_category_sets(dataset_dicts)):
        for c in cats:
            index.setdefault(c, []).append(i)
    return [index[c] for c in sorted(index)]


class ClassAwareSampler(Sampler):
    """Infinite stream of dataset indices: a class uniformly, then an image containing it uniformly.

    Like detectron2's :class:`TrainingSampler`, one global stream is generated from the seed and
    process ``rank`` takes positions ``rank, rank + W, rank + 2W, ...`` (W = world size): the
    shards are disjoint slices of the same stream, and the stream depends only on the seed and
    the class index. The indices can feed ``build_detection_train_loader(sampler=...)``, with or
    without aspect-ratio grouping (grouping only regroups the stream it is given).
    """

    _CHUNK = 4096  # draws per vectorised batch; changing it changes the stream

    def __init__(self, class_to_images: Sequence[Sequence[int]], *, seed: Optional[int] = None):
        """
        Args:
            class_to_images: for each class, the dataset indices of the images containing it
                (see :func:`class_to_image_indices`). Every class must have at least one image.
            seed: seed of the stream; must be the same on every process. None draws one seed
                shared by all processes (as detectron2's samplers do).
        """
        if len(class_to_images) == 0:
            raise ValueError("ClassAwareSampler needs at least one class with an image")
        empty = [c for c, images in enumerate(class_to_images) if len(images) == 0]
        if empty:
            raise ValueError(f"ClassAwareSampler: classes at positions {empty[:10]} have no image")
        self._counts = torch.tensor([len(images) for images in class_to_images], dtype=torch.int64)
        self._offsets = torch.cumsum(self._counts, 0) - self._counts
        self._flat = torch.tensor(list(itertools.chain.from_iterable(class_to_images)), dtype=torch.int64)
        self._seed = int(comm.shared_random_seed() if seed is None else seed)
        self._rank = comm.get_rank()
        self._world_size = comm.get_world_size()

    @classmethod
    def from_dataset_dicts(cls, dataset_dicts: Sequence[dict], *, seed: Optional[int] = None) -> "ClassAwareSampler":
        """Over the classes that occur in ``dataset_dicts``."""
        return cls(class_to_image_indices(dataset_dicts), seed=seed)

    @property
    def num_classes(self) -> int:
        return len(self._counts)

    def __iter__(self):
        yield from itertools.islice(self._infinite_indices(), self._rank, None, self._world_size)

    def _infinite_indices(self):
        g = torch.Generator()
        g.manual_seed(self._seed)
        while True:
            classes = torch.randint(self.num_classes, (self._CHUNK,), generator=g)
            # float64 uniform in [0, 1): floor(u * n) is uniform over 0..n-1 and never reaches n
            u = torch.rand(self._CHUNK, generator=g, dtype=torch.float64)
            within = (u * self._counts[classes]).floor().long()
            yield from self._flat[self._offsets[classes] + within].tolist()

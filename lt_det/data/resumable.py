"""A training data stream that ``--resume`` continues exactly where its checkpoint left it.

detectron2's training loader restarts its sampler's stream on resume, its augmentations draw from
each worker's global random state and aspect-ratio grouping keeps images in buckets across
iterations: a resumed run sees other batches than an uninterrupted one, and repeated pre-emption
over-samples the start of the stream. Here every item of a process's stream is identified by its
position p = 0, 1, 2, ... in that process's sampler stream, and everything random is a function of
(seed, rank, p) or (seed, rank, iteration):

* the sampler (detectron2's or lt_det's, one stream per process as they shard it) is built from a
  seed that the checkpoint records, so a resumed run draws the same stream;
* item p is augmented under random states seeded from (seed, rank, p), whichever worker maps it;
* the main process puts the items back into stream order, then groups them by aspect ratio with
  detectron2's ``AspectRatioGroupedDataset`` (or cuts plain batches);
* the state after each iteration is the lowest position not yet consumed by a batch and the
  consumed positions above it (the items left in the grouping buckets are the gaps): a resumed
  stream skips exactly the consumed positions, so its buckets fill as the uninterrupted run's did;
* ``lt_det.engine.hooks.ExactResumeHook`` seeds torch / numpy / random before each iteration from
  (seed, rank, iteration) (the ROI heads' and RPN's sampling of proposals), records the state of
  every process in the checkpoints and restores it on resume.

The loss of every iteration after a resume then equals the uninterrupted run's, on a machine whose
kernels are deterministic (CPUs; on GPUs the batches are the same, the sums of atomic adds in some
backward kernels are not bit-exact between any two runs).
"""
import heapq
import itertools
import logging
import random
from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from detectron2.data.common import AspectRatioGroupedDataset, DatasetFromList
from detectron2.utils import comm

__all__ = ["StreamState", "ResumableTrainLoader", "item_seed", "seed_all"]

logger = logging.getLogger(__name__)

POSITION_KEY = "stream_position"
# Items held for reordering: each worker delivers its positions in order and the data loader takes
# from the workers in turn, so a few per worker are the most a correct stream holds.
_MAX_OUT_OF_ORDER = 10_000  # added to each mapped dict: its position in the process's stream


def item_seed(*key: int) -> int:
    """A 32-bit seed from integers (numpy's SeedSequence: well mixed, the same on every platform)."""
    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(1)[0])


class StreamState:
    """Which positions of one process's stream the trainer has consumed.

    ``next_position``: the lowest position not consumed; ``consumed_after``: the consumed positions
    above it (items that aspect-ratio grouping batched before an earlier one still in a bucket).
    """

    def __init__(self, next_position: int = 0, consumed_after: Sequence[int] = ()):
        self.next_position = int(next_position)
        self.consumed_after = set(int(p) for p in consumed_after)

    def is_consumed(self, position: int) -> bool:
        return position < self.next_position or position in self.consumed_after

    def consume(self, positions: Sequence[int]) -> None:
        self.consumed_after.update(positions)
        while self.next_position in self.consumed_after:
            self.consumed_after.remove(self.next_position)
            self.next_position += 1

    def to_dict(self) -> dict:
        return {"next_position": self.next_position, "consumed_after": sorted(self.consumed_after)}

    @classmethod
    def from_dict(cls, d: dict) -> "StreamState":
        return cls(d["next_position"], d["consumed_after"])


def seed_all(seed: int) -> None:
    """Seeds Python's, numpy's and torch's (CPU and CUDA) global random states."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def _seeded(seed: int, restore: bool):
    """The global random states seeded with ``seed`` (detectron2's transforms draw from numpy's);
    put back afterwards when ``restore``."""
    saved = (random.getstate(), np.random.get_state(), torch.get_rng_state()) if restore else None
    seed_all(seed)
    try:
        yield
    finally:
        if saved is not None:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])


class _PositionedItems(IterableDataset):
    """(position, mapped dict or None) of one process's stream from ``start``, in increasing
    position; a data loader worker w of W takes the positions p with p % W == w."""

    def __init__(self, dataset: DatasetFromList, mapper: Callable, sampler, seed: int, rank: int, start: StreamState):
        self._dataset, self._mapper, self._sampler = dataset, mapper, sampler
        self._seed, self._rank, self._start = seed, rank, start

    def __iter__(self):
        worker = get_worker_info()
        worker_id, num_workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        for position, index in enumerate(self._sampler):
            if position % num_workers != worker_id or self._start.is_consumed(position):
                continue
            # in the main process (no workers), the trainer's own random states are put back
            with _seeded(item_seed(self._seed, self._rank, position), restore=worker is None):
                item = self._mapper(self._dataset[index])
            if item is not None:
                item[POSITION_KEY] = position
            yield position, item


def _as_is(item):
    return item  # (torch's default would convert numpy arrays inside the dicts)


class ResumableTrainLoader:
    """An infinite iterable of training batches (lists of mapped dicts) that resumes exactly.

    Args:
        dataset_dicts: the training list (detectron2's dicts).
        mapper: dict -> mapped dict or None (None: the item is skipped, as detectron2 retries).
        sampler_factory: seed -> an infinite sampler of indices into ``dataset_dicts`` for this
            process (detectron2's and lt_det's samplers shard by rank themselves).
        seed: the base seed; None draws one shared by every process. A restored state brings its own.
        batch_size: images per batch on this process.
        aspect_ratio_grouping: group images with w > h and w <= h (detectron2's rule).
        num_workers: data loader worker processes.
    """

    def __init__(self, dataset_dicts: List[dict], mapper: Callable, sampler_factory: Callable[[int], object],
                 seed: Optional[int], batch_size: int, aspect_ratio_grouping: bool = True, num_workers: int = 0):
        self._dataset = DatasetFromList(dataset_dicts, copy=False)
        self._mapper, self._sampler_factory = mapper, sampler_factory
        self.seed = int(comm.shared_random_seed() if seed is None else seed)
        self._batch_size, self._grouping, self._num_workers = batch_size, aspect_ratio_grouping, num_workers
        self.state = StreamState()

    def __iter__(self) -> Iterator[List[dict]]:
        # A generator: nothing is built until the first batch is asked for (detectron2 0.6's
        # SimpleTrainer calls iter() when built, before the checkpoint restores the state).
        start = StreamState.from_dict(self.state.to_dict())
        items = _PositionedItems(self._dataset, self._mapper, self._sampler_factory(self.seed), self.seed,
                                 comm.get_rank(), start)
        # its own generator: creating the iterator would otherwise draw from torch's global state,
        # at the first iteration of an uninterrupted run but at the first after a resume
        generator = torch.Generator().manual_seed(item_seed(self.seed, comm.get_rank(), 0, 2))
        loader = DataLoader(items, batch_size=None, num_workers=self._num_workers, collate_fn=_as_is,
                            generator=generator)
        ordered = self._in_stream_order(iter(loader), start)
        batches = AspectRatioGroupedDataset(ordered, self._batch_size) if self._grouping else self._chunks(ordered)
        for batch in batches:
            self.state.consume([d[POSITION_KEY] for d in batch])
            yield batch

    def _in_stream_order(self, items: Iterator, start: StreamState) -> Iterator[dict]:
        """Workers' items put back into position order (round-robin over workers interleaves
        them); items the mapper dropped are consumed on the spot."""
        expected = (p for p in itertools.count(start.next_position) if not start.is_consumed(p))
        want = next(expected)
        heap: list = []
        for position, item in items:
            heapq.heappush(heap, (position, id(item), item))
            if len(heap) > _MAX_OUT_OF_ORDER:  # workers deliver positions in order: a broken stream
                raise RuntimeError(f"The training stream waits for position {want} while {len(heap)} later "
                                   "items have arrived")
            while heap and heap[0][0] == want:
                _, _, ready = heapq.heappop(heap)
                if ready is None:
                    self.state.consume([want])
                else:
                    yield ready
                want = next(expected)

    def _chunks(self, items: Iterator[dict]) -> Iterator[List[dict]]:
        while True:
            yield list(itertools.islice(items, self._batch_size))

"""The resumable training stream: a restored state continues with exactly the batches an
uninterrupted stream gives, whatever the workers, grouping and dropped items."""
import itertools

import numpy as np
import pytest

from detectron2.data.samplers import TrainingSampler

from lt_det.data.resumable import POSITION_KEY, ResumableTrainLoader, StreamState


def test_stream_state_keeps_the_gaps_that_grouping_leaves():
    state = StreamState()
    state.consume([0, 2, 3])  # 1 waits in a bucket
    assert state.next_position == 1 and state.consumed_after == {2, 3}
    assert [p for p in range(6) if not state.is_consumed(p)] == [1, 4, 5]
    state.consume([1])
    assert state.to_dict() == {"next_position": 4, "consumed_after": []}
    assert StreamState.from_dict({"next_position": 4, "consumed_after": [6]}).is_consumed(6)


def _dicts(n=40):
    # a mix of landscape and portrait images, so that grouping holds some back
    return [{"image_id": i, "width": 100 if i % 3 else 50, "height": 50 if i % 3 else 100} for i in range(n)]


def _mapper(d):
    """Drops every 7th image (as a mapper that filters all of its instances would) and draws a
    random number as an augmentation does (numpy's global state)."""
    if d["image_id"] % 7 == 6:
        return None
    return {**d, "flip": float(np.random.rand())}


def _loader(num_workers, grouping=True, seed=5):
    return ResumableTrainLoader(_dicts(), _mapper, lambda s: TrainingSampler(40, seed=s), seed=seed, batch_size=3,
                                aspect_ratio_grouping=grouping, num_workers=num_workers)


def _take(loader, n):
    return [[(d["image_id"], d["flip"], d[POSITION_KEY]) for d in batch] for batch in itertools.islice(loader, n)]


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("grouping", [True, False])
def test_a_restored_state_continues_the_uninterrupted_stream(num_workers, grouping):
    uninterrupted = _take(_loader(num_workers, grouping), 30)  # 90 images: past an epoch of 40
    states = []
    first = _loader(num_workers, grouping)
    for batch in itertools.islice(first, 15):
        states.append(first.state.to_dict())
    # resume after a batch that left images waiting in a bucket (gaps), and after one that did not
    with_gaps = [k for k, s in enumerate(states, 1) if s["consumed_after"]]
    without = [k for k, s in enumerate(states, 1) if not s["consumed_after"]]
    assert bool(with_gaps) == grouping and without
    for k in with_gaps[:1] + without[-1:]:
        resumed = _loader(num_workers, grouping, seed=99)  # the state brings the stream's seed
        resumed.seed, resumed.state = first.seed, StreamState.from_dict(states[k - 1])
        assert _take(resumed, 30 - k) == uninterrupted[k:], k
    assert all(image_id % 7 != 6 for batch in uninterrupted for image_id, _, _ in batch)


def test_workers_do_not_change_the_stream():
    """The items, their augmentations and the batches do not depend on the number of workers."""
    stream = _take(_loader(0), 12)
    assert stream == _take(_loader(3), 12)
    flips = [flip for batch in stream for _, flip, _ in batch]
    assert len(set(flips)) == len(flips)  # each item draws its own augmentation


def test_restarting_the_stream_is_what_exact_resume_avoids():
    """A fresh stream (detectron2's behaviour on resume) repeats the first batches."""
    first = _loader(0)
    seen = _take(first, 5)
    assert _take(_loader(0), 5) == seen
    resumed = _loader(0)
    resumed.state = StreamState.from_dict(first.state.to_dict())
    assert _take(resumed, 5) != seen

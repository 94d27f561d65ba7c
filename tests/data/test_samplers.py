"""Repeat factor sampling (Gupta et al., LVIS, CVPR 2019) and class-aware sampling (Shen et al.,
ECCV 2016).

Expected values come from the formulas in lt_det/data/samplers.py's docstring.
"""
import collections
import itertools
import json
import math
import os

import numpy as np
import pytest
import torch

from detectron2.data import build_detection_train_loader
from detectron2.data.samplers import RepeatFactorTrainingSampler

from lt_det.data import samplers as samplers_module
from lt_det.data.samplers import (
    ClassAwareSampler,
    category_repeat_factors,
    class_to_image_indices,
    image_repeat_factors,
)

LVIS_V1_CAT_INFO = os.path.join(os.path.dirname(__file__), "lvis_v1_train_cat_info.json")
LVIS_V1_ANNOTATED_IMAGES = 99388  # images of lvis_v1_train.json with at least one annotation


def make_dicts(image_classes, sizes=None):
    """Detectron2-format dicts; image i holds one annotation per class in image_classes[i]."""
    sizes = sizes or [(100, 100)] * len(image_classes)
    return [
        {"image_id": i, "width": w, "height": h, "annotations": [{"category_id": c} for c in classes]}
        for i, (classes, (w, h)) in enumerate(zip(image_classes, sizes))
    ]


def first(sampler, n):
    return list(itertools.islice(iter(sampler), n))


# ---- repeat factor sampling -------------------------------------------------------------

# M = 10 images: class 0 in all 10 (f = 1), class 1 in 1 (f = 0.1), class 2 in 2 (f = 0.2).
HAND_MADE = [[0, 1], [0, 2], [0, 2]] + [[0]] * 7


def test_image_repeat_factors_equal_formula_sqrt():
    t = 0.5
    r1, r2 = math.sqrt(t / 0.1), math.sqrt(t / 0.2)  # r(0) = max(1, sqrt(0.5)) = 1
    expected = [r1, r2, r2] + [1.0] * 7
    np.testing.assert_allclose(image_repeat_factors(make_dicts(HAND_MADE), t).numpy(), expected, rtol=1e-6)


def test_image_repeat_factors_equal_formula_linear():
    t = 0.5
    expected = [0.5 / 0.1, 0.5 / 0.2, 0.5 / 0.2] + [1.0] * 7
    factors = image_repeat_factors(make_dicts(HAND_MADE), t, sqrt=False)
    np.testing.assert_allclose(factors.numpy(), expected, rtol=1e-6)


def test_image_repeat_factors_match_detectron2():
    dicts = make_dicts(HAND_MADE + [[3, 1], []])
    ours = image_repeat_factors(dicts, 0.3)
    theirs = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(dicts, 0.3)
    torch.testing.assert_close(ours, theirs)


def test_category_repeat_factors_threshold_zero_and_absent_class():
    np.testing.assert_array_equal(category_repeat_factors([5, 1], 10, 0.0), [1.0, 1.0])
    # a class in no image cannot repeat anything: factor 1, no division by zero
    np.testing.assert_array_equal(category_repeat_factors([0, 1], 10, 1.0), [1.0, math.sqrt(10)])


def test_lvis_v1_repeat_factors_at_t_0_001():
    with open(LVIS_V1_CAT_INFO) as f:
        cats = json.load(f)
    image_count = np.array([c["image_count"] for c in cats])
    frequency = np.array([c["frequency"] for c in cats])
    factors = category_repeat_factors(image_count, LVIS_V1_ANNOTATED_IMAGES, 0.001)
    # the rarest class has 1 image: sqrt(0.001 * 99388 / 1) = 9.969
    assert factors.max() == pytest.approx(math.sqrt(99.388), abs=1e-9)
    assert factors.max() == pytest.approx(9.97, abs=0.005)
    # rare classes (<= 10 images) repeat at least sqrt(99.388 / 10); frequent (> 100) never
    assert factors[frequency == "r"].min() >= math.sqrt(99.388 / 10)
    assert np.all(factors[frequency == "f"] == 1.0)


# ---- class-aware sampling -------------------------------------------------------------

def test_class_to_image_indices():
    assert class_to_image_indices(make_dicts([[5], [5, 2], [], [2, 2]])) == [[1, 3], [0, 1]]


def test_class_aware_sampling_uniform_over_classes_then_images():
    # single-class images with very unequal class sizes: 1, 2, 10, 50, 100 images
    sizes = [1, 2, 10, 50, 100]
    image_classes = [[c] for c, n in enumerate(sizes) for _ in range(n)]
    num_draws = 100_000
    stream = first(ClassAwareSampler.from_dataset_dicts(make_dicts(image_classes), seed=0), num_draws)
    image_freq = np.bincount(stream, minlength=len(image_classes)) / num_draws
    class_of = np.array([c[0] for c in image_classes])
    class_freq = np.bincount(class_of[stream], minlength=len(sizes)) / num_draws
    # each class 1/5 (binomial std 0.0013 at 1e5 draws; tolerance 0.01 is about 8 std)
    np.testing.assert_allclose(class_freq, 0.2, atol=0.01)
    # within class c each image has probability 1/5 * 1/n_c (tolerance 0.005: >= 4 std everywhere)
    np.testing.assert_allclose(image_freq, 0.2 / np.array(sizes)[class_of], atol=0.005)


def test_class_aware_sampling_multi_label_image_probabilities():
    # n = (4, 2, 1, 1) images per class; P(I) = 1/4 * sum_{c in I} 1/n_c, in sixteenths:
    image_classes = [[0], [0], [0, 1], [1], [2], [0, 3]]
    expected = np.array([1, 1, 3, 2, 4, 5]) / 16
    num_draws = 100_000
    stream = first(ClassAwareSampler.from_dataset_dicts(make_dicts(image_classes), seed=1), num_draws)
    # tolerance 0.01 is about 7 binomial std at 1e5 draws
    np.testing.assert_allclose(np.bincount(stream, minlength=6) / num_draws, expected, atol=0.01)


def test_class_aware_sampling_same_seed_same_stream():
    class_to_images = [[0, 1, 2], [3], [4, 5]]
    a = first(ClassAwareSampler(class_to_images, seed=7), 10_000)
    assert a == first(ClassAwareSampler(class_to_images, seed=7), 10_000)
    assert a != first(ClassAwareSampler(class_to_images, seed=8), 10_000)


def test_class_aware_shards_are_disjoint_slices_of_one_stream(monkeypatch):
    class_to_images = [[0, 1, 2], [3], [4, 5, 6, 7]]
    world_size, n = 3, 5000
    full = first(ClassAwareSampler(class_to_images, seed=3), world_size * n)
    monkeypatch.setattr(samplers_module.comm, "get_world_size", lambda: world_size)
    shards = []
    for rank in range(world_size):
        monkeypatch.setattr(samplers_module.comm, "get_rank", lambda rank=rank: rank)
        shards.append(first(ClassAwareSampler(class_to_images, seed=3), n))
    # process r gets stream positions r, r + W, ...: disjoint, and together the whole stream
    for rank, shard in enumerate(shards):
        assert shard == full[rank::world_size]
    assert shards[0] != shards[1]


def test_class_aware_sampler_rejects_empty_input():
    with pytest.raises(ValueError, match="at least one class"):
        ClassAwareSampler([], seed=0)
    with pytest.raises(ValueError, match="no image"):
        ClassAwareSampler([[0], []], seed=0)


def test_class_aware_sampler_with_aspect_ratio_grouping():
    # landscape images hold classes 0 / 1, portrait images classes 2 / 3
    image_classes = [[0], [0], [1], [2], [2], [2], [3]]
    sizes = [(200, 100)] * 3 + [(100, 200)] * 4
    dicts = make_dicts(image_classes, sizes)
    loader = build_detection_train_loader(
        dicts,
        mapper=lambda d: d,
        sampler=ClassAwareSampler.from_dataset_dicts(dicts, seed=0),
        total_batch_size=2,
        aspect_ratio_grouping=True,
    )
    batches = list(itertools.islice(iter(loader), 200))
    for batch in batches:
        assert len(batch) == 2
        assert len({d["width"] > d["height"] for d in batch}) == 1
    seen = collections.Counter(a["category_id"] for b in batches for d in b for a in d["annotations"])
    assert set(seen) == {0, 1, 2, 3}

"""The rule carrying LVIS v1's thresholds to a smaller set: same share of classes marked."""
import json
import math
import os

import pytest

from lt_det.benchmark.scaling import (LVIS_V1_FREQUENCY_MARKED, LVIS_V1_INSTANCE_COUNT_MARKED, LVIS_V1_NUM_CLASSES,
                                      scaled_count_edges, scaled_frequency_threshold, scaled_thresholds)

LVIS_V1 = os.path.join(os.path.dirname(__file__), "..", "data", "lvis_v1_train_cat_info.json")
LVIS_V1_ANNOTATED_IMAGES = 99388  # the denominator of EQL's f_j on LVIS v1 train


def test_lvis_shares_are_counted_on_lvis_v1():
    with open(LVIS_V1) as f:
        cats = json.load(f)
    assert len(cats) == LVIS_V1_NUM_CLASSES
    for t, marked in LVIS_V1_FREQUENCY_MARKED.items():
        assert sum(c["image_count"] / LVIS_V1_ANNOTATED_IMAGES < t for c in cats) == marked
    for edge, marked in LVIS_V1_INSTANCE_COUNT_MARKED.items():
        assert sum(c["instance_count"] < edge for c in cats) == marked


def test_frequency_threshold_marks_the_same_share():
    # 10 classes; t = 0.001 marks 796 / 1203 = 0.662 of LVIS -> round(6.62) = 7 classes here
    freq = [0.5, 0.3, 0.2, 0.1, 0.05, 0.04, 0.03, 0.02, 0.01, 0.005]
    t = scaled_frequency_threshold(0.001, freq)
    assert t == pytest.approx(math.sqrt(0.1 * 0.2))  # between the 7th (0.1) and 8th (0.2) smallest
    assert sum(f < t for f in freq) == 7
    # λ = 0.0011 marks 815 / 1203 = 0.677 -> also 7 of 10; t = 0.0005: 666 / 1203 = 0.554 -> 6
    assert sum(f < scaled_frequency_threshold(0.0005, freq) for f in freq) == 6


def test_count_edges_and_ties():
    counts = list(range(1, 101))  # 100 distinct counts: shares 0.166, 0.509, 0.786 -> 17, 51, 79 below
    assert scaled_count_edges((10, 100, 1000), counts) == (18, 52, 80)
    # all classes tie: the edges still increase
    assert scaled_count_edges((10, 100, 1000), [5] * 20) == (6, 7, 8)


def test_unknown_lvis_value_and_too_few_classes():
    with pytest.raises(KeyError, match="known"):
        scaled_frequency_threshold(0.002, [0.1, 0.2])
    with pytest.raises(ValueError, match="too few classes"):
        scaled_frequency_threshold(0.001, [0.1])


def test_scaled_thresholds_keys():
    image_count = list(range(1, 41))
    out = scaled_thresholds(image_count, [2 * c for c in image_count], num_images=100)
    assert set(out) == {"DATALOADER.REPEAT_THRESHOLD", "MODEL.LT_LOSS.TAIL_THRESHOLD",
                        "MODEL.LT_LOSS.BAGS.BIN_EDGES", "RFS_T_EQL"}
    # λ = 0.0011 marks round(0.677 * 40) = 27 classes: between 27 and 28 images of 100
    assert out["MODEL.LT_LOSS.TAIL_THRESHOLD"] == pytest.approx(math.sqrt(0.27 * 0.28))

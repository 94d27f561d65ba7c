"""BAGS's AP1-AP4 (classes binned by training instances [1, 10), [10, 100), [100, 1000),
[1000, ∞)) on a hand-made precision array."""
import math

import numpy as np
import pytest

from lt_det.evaluation.lvis_eval import format_metrics_table
from lt_det.evaluation.metrics import INSTANCE_BINS, instance_bin, summarize


@pytest.mark.parametrize("count, name", [(0, None), (1, "AP1"), (9, "AP1"), (10, "AP2"), (99, "AP2"),
                                         (100, "AP3"), (999, "AP3"), (1000, "AP4"), (10 ** 6, "AP4")])
def test_bin_edges(count, name):
    assert instance_bin(count) == name


def precision_of(values):
    """(T, R, K, A) with every entry of class k equal to values[k] (None: no ground truth, -1)."""
    p = np.empty((10, 101, len(values), 4))
    for k, v in enumerate(values):
        p[:, :, k, :] = -1.0 if v is None else v
    return p


def test_each_bin_averages_its_classes():
    # counts at the edges: 0 (no bin), 1 and 9 (AP1; 9 has no ground truth here), 10 and 99 (AP2),
    # 100 (AP3), none >= 1000
    counts = [0, 1, 9, 10, 99, 100]
    values = [0.9, 0.1, None, 0.2, 0.4, 0.3]
    out = summarize(precision_of(values), ["r"] * 6, counts)
    assert out["AP1"] == pytest.approx(0.1)
    assert out["AP2"] == pytest.approx(0.3)  # (0.2 + 0.4) / 2
    assert out["AP3"] == pytest.approx(0.3)
    assert math.isnan(out["AP4"])  # no class with 1000 or more instances
    assert out["AP"] == pytest.approx((0.9 + 0.1 + 0.2 + 0.4 + 0.3) / 5)  # every class with ground truth


def test_without_counts_there_are_no_bins_and_a_wrong_length_is_refused():
    out = summarize(precision_of([0.5, 0.5]), ["r", "f"])
    assert not set(INSTANCE_BINS) & set(out)
    with pytest.raises(ValueError, match="3 training instance counts for 2 categories"):
        summarize(precision_of([0.5, 0.5]), ["r", "f"], [1, 2, 3])


def test_the_printed_table_has_the_bins_when_known():
    with_bins = {"bbox": {**{k: 10.0 for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")},
                          "AP1": 1.0, "AP2": 2.0, "AP3": 3.0, "AP4": float("nan")}}
    header = format_metrics_table(with_bins).splitlines()[0]
    assert "AP1" in header and "AP4" in header
    without = {"bbox": {k: v for k, v in with_bins["bbox"].items() if k not in INSTANCE_BINS}}
    assert "AP1" not in format_metrics_table(without).splitlines()[0]

"""Every backend equals lvis-api on every metric and every class, on every fixture.

The fixtures cover the protocol's traps: more than 300 detections per image (the cap is per
image across classes), federated negatives, not-exhaustive classes, unannotated classes, ties,
segm area ranges from mask areas; and Fixed AP (no per-image cap, top-k per class).
"""
import copy
import functools
import os

import numpy as np
import pytest

from lt_det.evaluation.backends import BACKENDS, DEFAULT_BACKEND, get_backend
from lt_det.evaluation.lvis_eval import LVIS_MAX_DETS_PER_IMAGE
from lt_det.evaluation.metrics import METRICS, per_class_ap, summarize

from .conftest import frequencies, make_fixture, write_fixture

FAST_BACKENDS = [b for b in BACKENDS if b != "lvis"]
KINDS = ["noisy", "perfect", "ties", "sparse"]
MODES = {"standard": (LVIS_MAX_DETS_PER_IMAGE, None), "fixed_ap": (-1, 40)}  # fixed: k=40 bites here


@functools.lru_cache(maxsize=None)
def _fixture(kind, mode, root):
    gt, dets = make_fixture(kind)
    max_dets, top_k = MODES[mode]
    gt_json, counts = write_fixture(os.path.join(root, f"{kind}_{mode}"), gt, dets, top_k_per_category=top_k)
    assert set(counts) == {"bbox", "segm"}
    return gt, gt_json, max_dets


@functools.lru_cache(maxsize=None)
def _evaluate(backend, kind, mode, task, root):
    gt, gt_json, max_dets = _fixture(kind, mode, root)
    results = os.path.join(os.path.dirname(gt_json), f"lvis_results_{task}.json")
    return get_backend(backend)(gt_json, results, task, max_dets), frequencies(gt)


def _assert_equal_nan(a, b, atol):
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=0, atol=atol, equal_nan=True)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("task", ["bbox", "segm"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_backend_equals_lvis_api(backend, kind, task, mode, fixture_dir):
    ref, freq = _evaluate("lvis", kind, mode, task, fixture_dir)
    got, _ = _evaluate(backend, kind, mode, task, fixture_dir)
    ref_metrics, got_metrics = summarize(ref, freq), summarize(got, freq)
    _assert_equal_nan([got_metrics[k] for k in METRICS], [ref_metrics[k] for k in METRICS], atol=1e-4)
    _assert_equal_nan(per_class_ap(got), per_class_ap(ref), atol=1e-4)


def test_default_backend_is_a_fast_one():
    assert DEFAULT_BACKEND in FAST_BACKENDS


def test_summarize_equals_lvis_api_summary(fixture_dir):
    """Our nine metrics are lvis-api's own ``summarize`` numbers (-1 there is NaN here)."""
    from lvis import LVIS, LVISEval, LVISResults

    gt, gt_json, _ = _fixture("noisy", "standard", fixture_dir)
    results = os.path.join(os.path.dirname(gt_json), "lvis_results_segm.json")
    lvis_gt = LVIS(gt_json)
    lvis_eval = LVISEval(lvis_gt, LVISResults(lvis_gt, results), "segm")
    lvis_eval.run()
    expected = {k: (np.nan if v == -1 else v) for k, v in lvis_eval.get_results().items()}
    got = summarize(np.asarray(lvis_eval.eval["precision"]), frequencies(gt))
    _assert_equal_nan([got[k] for k in METRICS], [expected[k] for k in METRICS], atol=1e-12)


def test_perfect_detections_score_one(fixture_dir):
    """Independent of lvis-api: the ground truth itself has AP 1 on every defined metric."""
    for task in ("bbox", "segm"):
        precision, freq = _evaluate(DEFAULT_BACKEND, "perfect", "standard", task, fixture_dir)
        metrics = summarize(precision, freq)
        assert not np.isnan(metrics["AP"])
        for k in METRICS:
            assert np.isnan(metrics[k]) or metrics[k] == pytest.approx(1.0), (task, k)


def test_fixtures_exercise_the_traps():
    """The noisy fixture really has what the agreement tests claim to cover."""
    gt, dets = make_fixture("noisy")
    per_image = np.bincount([d["image_id"] for d in dets])
    assert per_image.max() > LVIS_MAX_DETS_PER_IMAGE
    neg = {(im["id"], c) for im in gt["images"] for c in im["neg_category_ids"]}
    nel = {(im["id"], c) for im in gt["images"] for c in im["not_exhaustive_category_ids"]}
    pairs = {(d["image_id"], d["category_id"]) for d in dets}
    assert pairs & neg and pairs & nel
    assert set(frequencies(gt)) == {"r", "c", "f"}
    ties = copy.deepcopy(make_fixture("ties")[1])
    assert len({d["score"] for d in ties}) < len(ties) / 100

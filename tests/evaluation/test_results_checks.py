"""Result records are validated once, before any backend: the same verdict for every backend."""
import json

import numpy as np
import pycocotools.mask as mask_util
import pytest

from lt_det.evaluation import backends
from lt_det.evaluation.lvis_eval import GroundTruthInfo, evaluate_lvis
from lt_det.evaluation.results_checks import rle_run_totals
from lt_det.evaluation.results_io import write_task_files

# A 4 x 4 image whose top-left 2 x 2 pixels are set: column-major runs 0, 2, 2, 2, 10. Encoded by
# hand: runs 0, 1, 2 as themselves ("0", "2", "2"), then deltas on run m - 2: 2 - 2 = 0 ("0") and
# 10 - 2 = 8 ("8").
GOOD_RLE = {"size": [4, 4], "counts": "02208"}


def _runs_of(mask: np.ndarray) -> np.ndarray:
    """Column-major run lengths of a binary mask, starting with a (possibly empty) run of zeros."""
    flat = mask.flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.r_[0, change, flat.size])
    return np.r_[0, runs] if flat[0] else runs


def test_hand_encoded_strings_decode_to_their_runs():
    # "04L0": runs 0, 4, then "L" = 48 + 28: 28 has the sign bit 0x10, so 28 - 32 = -4 (run 2 is
    # not a delta), then "0" = 0 + run 1 = 4: runs 0, 4, -4, 4, total 4, smallest -4 (malformed).
    totals, min_run = rle_run_totals([b"02208", b"04L0", b"", b"0a", b"0\x7f", "0é".encode()])
    assert totals.tolist() == [16, 4, 0, -1, -1, -1]  # "a" continues a run that never ends
    assert min_run[:3].tolist() == [0, -4, 0]
    # pycocotools' own encoding of the same mask is the hand-worked string
    mask = np.zeros((4, 4), dtype=np.uint8, order="F")
    mask[:2, :2] = 1
    assert mask_util.encode(mask)["counts"] == b"02208"


def test_batch_decoding_equals_the_runs_of_random_masks():
    rng = np.random.default_rng(0)
    masks = []
    for _ in range(300):
        h, w = rng.integers(1, 200, 2)
        mask = np.asfortranarray(rng.random((h, w)) < rng.choice([0.0, 0.02, 0.5, 1.0]), dtype=np.uint8)
        y, x = rng.integers(0, h), rng.integers(0, w)
        mask[y:y + 40, x:x + 90] = 1  # long runs need several 5-bit groups and large deltas
        masks.append(mask)
    totals, min_run = rle_run_totals([mask_util.encode(m)["counts"] for m in masks])
    assert totals.tolist() == [m.size for m in masks]
    assert min_run.tolist() == [_runs_of(m).min() for m in masks]


def _gt(tmp_path):
    gt = {
        "images": [{"id": 1, "height": 4, "width": 4}, {"id": 2, "height": 4, "width": 4}],
        "categories": [{"id": 1, "name": "a", "frequency": "f", "image_count": 2},
                       {"id": 2, "name": "b", "frequency": "r", "image_count": 1}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2], "area": 4,
             "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2]]},
            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [0, 0, 2, 2], "area": 4,
             "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2]]},
        ],
    }
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    return GroundTruthInfo.load(str(path))


def _record(**change):
    r = {"image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 2.0, 2.0], "score": 0.9, "segmentation": GOOD_RLE}
    r.update(change)
    return r


BAD_RECORDS = [
    (_record(score=float("nan")), "score nan is not a finite number"),
    (_record(score=float("inf")), "score inf is not a finite number"),
    (_record(score=None), "score None"),
    (_record(bbox=[0.0, 0.0, -1.0, 2.0]), "negative width or height"),
    (_record(bbox=[0.0, float("nan"), 1.0, 2.0]), "not 4 finite numbers"),
    (_record(bbox=[0.0, 0.0, 1.0]), "not 4 finite numbers"),
    (_record(segmentation=None), "not a compressed RLE"),
    (_record(segmentation=[[0, 0, 2, 0, 2, 2]]), "not a compressed RLE"),
    (_record(segmentation={"size": [4, 4], "counts": "04L0"}), "not a valid compressed RLE"),
    (_record(segmentation={"size": [4, 4], "counts": "022"}), "cover 4 pixels, its size 4 x 4 = 16"),
    (_record(segmentation={"size": [8, 2], "counts": "02208"}), "size [8, 2] is not its image's"),
]


@pytest.mark.parametrize("record, message", BAD_RECORDS)
def test_each_bad_record_is_named_and_nothing_is_written(tmp_path, record, message):
    gt = _gt(tmp_path)
    (tmp_path / "lvis_results_bbox.json").write_text("[]")  # an earlier run's file
    records = [_record(), _record(image_id=2, category_id=2), record]
    with pytest.raises(ValueError, match="record 2 \\(image_id 1, category_id 1\\)") as e:
        write_task_files(lambda: iter(records), str(tmp_path), gt.image_sizes, [1, 2])
    assert message in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt.json"]


def test_problems_of_the_whole_stream_are_counted_per_field(tmp_path):
    gt = _gt(tmp_path)
    records = [_record(score=float("nan"))] * 12 + [_record(bbox=[0, 0, -1, 1])]
    with pytest.raises(ValueError, match=r"\(1 bad bbox, 12 bad score\)") as e:
        write_task_files(lambda: iter(records), str(tmp_path), gt.image_sizes, [1, 2])
    assert str(e.value).count("record ") == 10  # the first ten are shown


def test_valid_records_pass_unchanged(tmp_path):
    gt = _gt(tmp_path)
    records = [_record(), _record(image_id=2, category_id=2, score=1, bbox=[0, 0, 0, 0])]
    assert write_task_files(lambda: iter(records), str(tmp_path), gt.image_sizes, [1, 2]) == {"bbox": 2, "segm": 2}
    assert json.loads((tmp_path / "lvis_results_segm.json").read_text())[0]["segmentation"] == GOOD_RLE


@pytest.mark.parametrize("backend", sorted(backends.BACKENDS))
@pytest.mark.parametrize("fixed_ap", [None, 10])
def test_no_backend_runs_on_bad_records(tmp_path, monkeypatch, backend, fixed_ap):
    """The verdict does not depend on the backend, and none reads a bad record: a malformed RLE
    that would make lvis-api loop without end in rleIou never reaches it."""
    gt = _gt(tmp_path)

    def must_not_run(*args):
        raise AssertionError("a backend ran on invalid records")

    monkeypatch.setitem(backends.BACKENDS, backend, must_not_run)
    records = [_record(), _record(segmentation={"size": [4, 4], "counts": "04L0"})]
    with pytest.raises(ValueError, match="record 1 .*not a valid compressed RLE"):
        evaluate_lvis(gt, lambda: iter(records), str(tmp_path / "out"), ["bbox", "segm"], backend,
                      fixed_ap_dets_per_class=fixed_ap, save_per_class_results=False)


def test_without_run_decoding_everything_else_is_still_checked(tmp_path):
    """The evaluator's own masks (pycocotools' encodings) skip only the run decoding."""
    gt = _gt(tmp_path)
    unchecked_runs = [_record(segmentation={"size": [4, 4], "counts": "04L0"})]
    assert write_task_files(lambda: iter(unchecked_runs), str(tmp_path), gt.image_sizes, [1, 2],
                            decode_rle=False) == {"bbox": 1, "segm": 1}
    for record, message in BAD_RECORDS:
        if "not a valid compressed RLE" in message or "cover" in message:
            continue  # what only decoding the runs finds
        with pytest.raises(ValueError, match="record 0"):
            write_task_files(lambda: iter([record]), str(tmp_path), gt.image_sizes, [1, 2], decode_rle=False)

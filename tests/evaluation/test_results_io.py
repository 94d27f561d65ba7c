"""Shards and per-task results files."""
import json

from lt_det.evaluation.results_io import ShardWriter, read_shards, write_task_files


def _record(image_id, score, with_mask=True):
    r = {"image_id": image_id, "category_id": 1, "bbox": [0.0, 0.0, 2.0, 2.0], "score": score}
    if with_mask:
        # the 4 x 4 mask with its top-left 2 x 2 pixels set: column-major runs 0, 2, 2, 2, 10
        r["segmentation"] = {"size": [4, 4], "counts": "02208"}
    return r


def test_shards_stream_in_order_and_task_files_hold_only_their_fields(tmp_path):
    shards = [str(tmp_path / "rank_0.jsonl"), str(tmp_path / "rank_1.jsonl")]
    for path, images in zip(shards, ([[_record(1, 0.5), _record(1, 0.25)], []], [[_record(2, 0.75)]])):
        writer = ShardWriter(path)
        for records in images:
            writer.write(records)
        writer.close()
    assert [r["score"] for r in read_shards(shards)] == [0.5, 0.25, 0.75]

    counts = write_task_files(lambda: read_shards(shards), str(tmp_path), {1: (4, 4), 2: (4, 4)}, [1])
    assert counts == {"bbox": 3, "segm": 3}
    with open(tmp_path / "lvis_results_bbox.json") as f:
        assert set(json.load(f)[0]) == {"image_id", "category_id", "bbox", "score"}
    with open(tmp_path / "lvis_results_segm.json") as f:
        segm = json.load(f)
    # no box in segm results: lvis-api and hotcoco would take the area ranges from it
    assert set(segm[0]) == {"image_id", "category_id", "segmentation", "score"}
    assert [r["score"] for r in segm] == [0.5, 0.25, 0.75]


def test_box_only_results_write_no_segm_file(tmp_path):
    counts = write_task_files(lambda: iter([_record(1, 0.5, with_mask=False)]), str(tmp_path), {1: (4, 4)}, [1])
    assert counts == {"bbox": 1}
    assert not (tmp_path / "lvis_results_segm.json").exists()

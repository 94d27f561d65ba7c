"""LVIS results on disk: per-process shards written during inference, merged by streaming.

detectron2's ``LVISEvaluator`` gathers every process's predictions into the main process as
Python objects (pickled, sent, unpickled: several copies at once; tens of GB on LVIS val). Here
each process appends one JSON line per image to its own shard while it runs inference, so no
process ever holds more than one image of results; the main process then streams the shards,
one record at a time, into one results file per task, which the backend reads itself (hotcoco
parses it in Rust, with no Python objects per detection).

A record is one LVIS result dict: ``image_id``, ``category_id`` (LVIS ids), ``score``, ``bbox``
(XYWH, absolute) and, with masks, ``segmentation`` (compressed RLE, ``counts`` a str).
"""
import json
import os
from array import array
from typing import Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

import numpy as np

from .fixed_ap import top_k_per_class
from .results_checks import ResultsValidator

__all__ = ["ShardWriter", "read_shards", "write_detections", "write_task_files"]

# The fields of each task's results file. segm leaves out the box so that lvis-api (and hotcoco)
# compute the area ranges from the mask, as detectron2 arranges for lvis-api.
_TASK_FIELDS = {"bbox": ("image_id", "category_id", "bbox", "score"),
                "segm": ("image_id", "category_id", "segmentation", "score")}
_TASK_KEY = {"bbox": "bbox", "segm": "segmentation"}


class ShardWriter:
    """Appends each image's records to one process's shard (one JSON list per line)."""

    def __init__(self, path: str):
        self._file = open(path, "w")

    def write(self, records: List[dict]) -> None:
        self._file.write(json.dumps(records))
        self._file.write("\n")

    def close(self) -> None:
        self._file.close()


def read_shards(paths: Iterable[str]) -> Iterator[dict]:
    """Every record of the shards, in shard order then write order, one line in memory at a time."""
    for path in paths:
        with open(path) as f:
            for line in f:
                yield from json.loads(line)


def write_detections(records: Iterable[dict], path: str) -> int:
    """Streams ``records`` into one LVIS results json at ``path`` (every field kept: the file
    ``tools/evaluate_lvis_results.py`` reads), written to a temporary file first; returns the count."""
    count = 0
    with open(path + ".tmp", "w") as f:
        f.write("[")
        for r in records:
            f.write("," if count else "")
            f.write(json.dumps(r))
            count += 1
        f.write("]")
    os.replace(path + ".tmp", path)
    return count


def write_task_files(
    open_records: Callable[[], Iterator[dict]],
    out_dir: str,
    image_sizes: Mapping[int, Tuple[int, int]],
    category_ids: Iterable[int],
    top_k_per_category: Optional[int] = None,
    decode_rle: bool = True,
) -> Dict[str, int]:
    """Streams the records into ``out_dir/lvis_results_{task}.json``, one file per task present.

    Every record is validated first (:mod:`lt_det.evaluation.results_checks`): no backend sees a
    file with a bad record.

    Args:
        open_records: returns a fresh iterator over the records (called twice with
            ``top_k_per_category``, once otherwise).
        image_sizes: {image id: (height, width)} of the annotation file.
        category_ids: the annotation file's category ids.
        top_k_per_category: Fixed AP: keep only each category's top k over all images.
        decode_rle: also decode every mask's runs (see :class:`ResultsValidator`).

    Returns:
        {task: number of detections written}; a task with 0 detections has no file.

    Raises:
        ValueError: naming unknown image or category ids and the first invalid records.
    """
    validator = ResultsValidator(image_sizes, list(category_ids), decode_rle=decode_rle)
    keep = None
    if top_k_per_category is not None:
        cats, scores = array("q"), array("d")
        for i, r in enumerate(open_records()):
            validator.check(i, r)
            cats.append(r["category_id"] if isinstance(r.get("category_id"), int) else -1)
            scores.append(r["score"] if isinstance(r.get("score"), (int, float)) else 0.0)
        validator.finish()
        keep = top_k_per_class(np.frombuffer(cats, dtype=np.int64), np.frombuffer(scores), top_k_per_category)

    paths = {task: os.path.join(out_dir, f"lvis_results_{task}.json") for task in _TASK_FIELDS}
    files = {task: open(path + ".tmp", "w") for task, path in paths.items()}
    counts = {task: 0 for task in _TASK_FIELDS}
    valid = False
    try:
        for i, r in enumerate(open_records()):
            if keep is None:
                if not validator.check(i, r):
                    continue  # reported by finish()
            elif not keep[i]:
                continue
            for task, fields in _TASK_FIELDS.items():
                if _TASK_KEY[task] in r:
                    files[task].write("[" if counts[task] == 0 else ",")
                    files[task].write(json.dumps({k: r[k] for k in fields}))
                    counts[task] += 1
        validator.finish()
        valid = True
    finally:
        for f in files.values():
            f.close()
        for task, path in paths.items():
            if valid and counts[task]:
                with open(path + ".tmp", "a") as f:
                    f.write("]")
                os.replace(path + ".tmp", path)
            else:  # no file of an earlier run may pass for this one's
                os.remove(path + ".tmp")
                if os.path.exists(path):
                    os.remove(path)
    return {task: n for task, n in counts.items() if n}

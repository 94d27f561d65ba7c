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
from typing import Callable, Dict, Iterable, Iterator, List, Optional

import numpy as np

from .fixed_ap import top_k_per_class

__all__ = ["ShardWriter", "read_shards", "write_task_files"]

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


def _unknown_ids_error(kind: str, unknown: set, known: set) -> ValueError:
    shown = sorted(unknown)[:10]
    return ValueError(
        f"The results name {len(unknown)} {kind} id(s) that the annotation file does not have, "
        f"e.g. {shown} (it has {len(known)} {kind}s, ids {min(known)}..{max(known)}). "
        "Are the results for another split, or category ids contiguous (0..K-1) instead of LVIS ids?"
    )


def write_task_files(
    open_records: Callable[[], Iterator[dict]],
    out_dir: str,
    image_ids: Iterable[int],
    category_ids: Iterable[int],
    top_k_per_category: Optional[int] = None,
) -> Dict[str, int]:
    """Streams the records into ``out_dir/lvis_results_{task}.json``, one file per task present.

    Args:
        open_records: returns a fresh iterator over the records (called twice with
            ``top_k_per_category``, once otherwise).
        image_ids, category_ids: the annotation file's; records naming others are an error.
        top_k_per_category: Fixed AP: keep only each category's top k over all images.

    Returns:
        {task: number of detections written}; a task with 0 detections has no file.

    Raises:
        ValueError: naming unknown image or category ids.
    """
    image_ids, category_ids = set(image_ids), set(category_ids)
    keep = None
    if top_k_per_category is not None:
        cats, scores = array("q"), array("d")
        for r in open_records():
            cats.append(r["category_id"])
            scores.append(r["score"])
        keep = top_k_per_class(np.frombuffer(cats, dtype=np.int64), np.frombuffer(scores), top_k_per_category)

    paths = {task: os.path.join(out_dir, f"lvis_results_{task}.json") for task in _TASK_FIELDS}
    files = {task: open(path + ".tmp", "w") for task, path in paths.items()}
    counts = {task: 0 for task in _TASK_FIELDS}
    unknown_images, unknown_cats = set(), set()
    try:
        for i, r in enumerate(open_records()):
            if r["image_id"] not in image_ids:
                unknown_images.add(r["image_id"])
            if r["category_id"] not in category_ids:
                unknown_cats.add(r["category_id"])
            if keep is not None and not keep[i]:
                continue
            for task, fields in _TASK_FIELDS.items():
                if _TASK_KEY[task] in r:
                    files[task].write("[" if counts[task] == 0 else ",")
                    files[task].write(json.dumps({k: r[k] for k in fields}))
                    counts[task] += 1
    finally:
        for f in files.values():
            f.close()
    for task, path in paths.items():
        if counts[task] and not (unknown_images or unknown_cats):
            with open(path + ".tmp", "a") as f:
                f.write("]")
            os.replace(path + ".tmp", path)
        else:
            os.remove(path + ".tmp")
    if unknown_images:
        raise _unknown_ids_error("image", unknown_images, image_ids)
    if unknown_cats:
        raise _unknown_ids_error("category", unknown_cats, category_ids)
    return {task: n for task, n in counts.items() if n}

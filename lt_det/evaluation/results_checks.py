"""Validation of LVIS result records before any AP backend reads them.

The three backends check their input differently, or not at all: lvis-api scores results with
NaN scores and can loop without end in ``rleIou`` on a malformed RLE; hotcoco accepts broken or
null segmentations and ranks an infinite score differently from the others; all three accept a
negative box width (bbox AP drops to 0 without a word). Every record is therefore checked here,
once, so that the verdict is the same whichever backend follows. A record is valid when:

* ``image_id`` is an image of the annotation file and ``category_id`` one of its categories;
* ``score`` is a finite number;
* ``bbox`` (when present) is 4 finite numbers ``[x, y, w, h]`` with ``w >= 0`` and ``h >= 0``;
* ``segmentation`` (when present) is a compressed RLE ``{"size": [h, w], "counts": str}`` whose
  size is its image's and whose run lengths are all >= 0 and add up to ``h * w``, with every
  character in COCO's RLE alphabet and the last run complete. (The evaluator skips only the
  decoding of the runs: its masks are pycocotools' own encodings, made as it received them.)

Problems are collected over the whole stream and reported together: the number of bad records per
reason and the first few records, by position in the stream and ids.
"""
import math
from collections import Counter
from typing import List, Mapping, Sequence, Tuple

import numpy as np

__all__ = ["ResultsValidator", "rle_run_totals"]

_MAX_SHOWN = 10
_RLE_BATCH = 4096  # segmentations decoded per vectorised batch


def _ids_error(kind: str, unknown: set, known) -> str:
    shown = sorted(unknown, key=repr)[:_MAX_SHOWN]
    known = list(known)
    return (
        f"The results name {len(unknown)} {kind} id(s) that the annotation file does not have, "
        f"e.g. {shown} (it has {len(known)} {kind}s, ids {min(known)}..{max(known)}). "
        "Are the results for another split, or category ids contiguous (0..K-1) instead of LVIS ids?"
    )


def _is_finite_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def rle_run_totals(counts: Sequence[bytes]) -> Tuple[np.ndarray, np.ndarray]:
    """Decodes COCO compressed RLE strings (pycocotools' ``rleFrString``) into run-length sums.

    The format: each run length is written as 5-bit groups, least significant first, each group a
    character ``48 + g`` with bit 0x20 set when another group follows; the last group's bit 0x10
    is the sign. From the fourth run on (index m > 2) the value is a delta on run m - 2. pycocotools
    does not expose the decoded runs, and decoding one string at a time in Python would cost
    minutes on LVIS val's 1.5M masks: this decodes a batch with numpy.

    Args:
        counts: B byte strings.

    Returns:
        totals: int64 (B,), the sum of the run lengths (-1 for a string that cannot be decoded:
            a character outside the alphabet, an unfinished last run or a run over 7 groups);
        min_run: int64 (B,), the smallest run length (0 for an empty string), negative = malformed.
    """
    num = len(counts)
    lengths = np.fromiter((len(c) for c in counts), dtype=np.int64, count=num)
    totals = np.zeros(num, dtype=np.int64)
    min_run = np.zeros(num, dtype=np.int64)
    nonempty = np.flatnonzero(lengths)
    if len(nonempty) == 0:
        return totals, min_run
    chars = np.frombuffer(b"".join(counts), dtype=np.uint8).astype(np.int16) - 48
    string_end = np.cumsum(lengths)
    bad = np.zeros(num, dtype=bool)
    outside = np.flatnonzero((chars < 0) | (chars > 63))
    bad[np.searchsorted(string_end, outside, side="right")] = True  # not in the RLE alphabet
    more = (chars & 0x20) != 0
    last_char = string_end[nonempty] - 1
    bad[nonempty[more[last_char]]] = True  # the last run of a string is unfinished

    # Runs: a run ends at every character without the continuation bit, and at each string's end.
    ends = ~more
    ends[last_char] = True
    run_end = np.flatnonzero(ends)
    run_start = np.r_[0, run_end[:-1] + 1]
    run_len = run_end - run_start + 1
    # a 32-bit run (or delta) needs at most 7 groups; pycocotools never writes more
    bad[np.searchsorted(string_end, run_start[run_len > 7], side="right")] = True
    value = (chars[run_start] & 0x1F).astype(np.int64)
    for k in range(1, 7):  # group k of every run that has one
        longer = run_len > k
        value[longer] += (chars[run_start[longer] + k] & 0x1F).astype(np.int64) << (5 * k)
    sign = (chars[run_end] & 0x10) != 0
    value[sign] -= np.left_shift(1, 5 * np.minimum(run_len[sign], 7))

    # Undo the delta coding: run m (m > 2) = value m + run m - 2, within each string. The runs
    # m = 2, 4, 6, ... and m = 1, 3, 5, ... are running sums of their values: one cumulative sum per
    # parity over the whole batch, minus its value where the string starts.
    first_of_string = np.zeros(len(chars), dtype=bool)
    first_of_string[string_end[nonempty] - lengths[nonempty]] = True
    first_run = np.flatnonzero(first_of_string[run_start])  # one per non-empty string, in order
    string_start = np.repeat(first_run, np.diff(np.r_[first_run, len(run_end)]))
    index = np.arange(len(run_end)) - string_start
    odd = (index & 1) == 1
    running_odd = np.cumsum(np.where(odd, value, 0))
    running_even = np.cumsum(np.where(~odd & (index >= 2), value, 0))
    runs = np.where(odd, running_odd - running_odd[string_start], running_even - running_even[string_start])
    runs[index == 0] = value[index == 0]
    totals[nonempty] = np.add.reduceat(runs, first_run)
    min_run[nonempty] = np.minimum.reduceat(runs, first_run)
    totals[bad] = -1
    return totals, min_run


class ResultsValidator:
    """Checks a stream of records one at a time; :meth:`finish` raises if any was bad.

    Args:
        image_sizes: {image id: (height, width)} of the annotation file.
        category_ids: the annotation file's category ids.
        decode_rle: decode each mask's runs (~30 us for a 200-pixel-wide mask of an 800 x 1000
            image). False checks everything else (the RLE's form and size included): for masks
            that pycocotools' encoder wrote in this process, well-formed by construction.
    """

    def __init__(self, image_sizes: Mapping[int, Tuple[int, int]], category_ids: Sequence[int],
                 decode_rle: bool = True):
        self._image_sizes = image_sizes
        self._decode_rle = decode_rle
        self._category_ids = set(category_ids)
        self._unknown_images: set = set()
        self._unknown_categories: set = set()
        self._reasons: Counter = Counter()  # bad records per field
        self._flagged = 0  # problems found so far
        self._shown: List[str] = []
        self._pending: List[Tuple[int, dict, bytes, Tuple[int, int]]] = []  # segmentations to decode

    def _bad(self, index: int, record: dict, kind: str, detail: str) -> None:
        self._reasons[kind] += 1
        self._flagged += 1
        if len(self._shown) < _MAX_SHOWN:
            self._shown.append(f"record {index} (image_id {record.get('image_id')!r}, category_id "
                               f"{record.get('category_id')!r}): {detail}")

    def check(self, index: int, record: dict) -> bool:
        """Checks record number ``index`` of the stream. Returns False when it is already known to
        be bad; True does not mean valid yet: segmentations are decoded in batches, later."""
        flagged = self._flagged
        image_id = record.get("image_id")
        size = self._image_sizes.get(image_id)
        if size is None:
            self._unknown_images.add(image_id)
            self._flagged += 1
        if record.get("category_id") not in self._category_ids:
            self._unknown_categories.add(record.get("category_id"))
            self._flagged += 1
        if not _is_finite_number(record.get("score")):
            self._bad(index, record, "score", f"score {record.get('score')!r} is not a finite number")
        if "bbox" in record:
            box = record["bbox"]
            if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(map(_is_finite_number, box))):
                self._bad(index, record, "bbox", f"bbox {box!r} is not 4 finite numbers [x, y, w, h]")
            elif box[2] < 0 or box[3] < 0:
                self._bad(index, record, "bbox", f"bbox {list(box)} has a negative width or height")
        if "segmentation" in record:
            self._check_segmentation(index, record, size)
        return self._flagged == flagged

    def _check_segmentation(self, index: int, record: dict, image_size) -> None:
        segm = record["segmentation"]
        size = segm.get("size") if isinstance(segm, dict) else None
        if not (isinstance(segm.get("counts") if size else None, (str, bytes)) and isinstance(size, (list, tuple))
                and len(size) == 2 and all(isinstance(n, int) and n > 0 for n in size)):
            self._bad(index, record, "segmentation",
                      f"segmentation {str(segm)[:80]} is not a compressed RLE {{'size': [h, w], 'counts': str}}")
            return
        if image_size is not None and tuple(size) != tuple(image_size):
            self._bad(index, record, "segmentation",
                      f"segmentation size {list(size)} is not its image's [height, width] {list(image_size)}")
            return
        if not self._decode_rle:
            return
        counts = segm["counts"]
        # utf-8: any non-ASCII character becomes bytes outside the RLE alphabet, so it is caught
        self._pending.append((index, record, counts.encode() if isinstance(counts, str) else counts, tuple(size)))
        if len(self._pending) >= _RLE_BATCH:
            self._decode_pending()

    def _decode_pending(self) -> None:
        if not self._pending:
            return
        totals, min_run = rle_run_totals([p[2] for p in self._pending])
        for (index, record, _, (h, w)), total, low in zip(self._pending, totals.tolist(), min_run.tolist()):
            if total < 0 or low < 0:
                self._bad(index, record, "segmentation", "segmentation counts are not a valid compressed RLE")
            elif total != h * w:
                self._bad(index, record, "segmentation",
                          f"segmentation runs cover {total} pixels, its size {h} x {w} = {h * w}")
        self._pending = []

    def finish(self) -> None:
        """Raises ValueError describing every kind of problem found; nothing if all were valid."""
        self._decode_pending()
        problems = []
        if self._unknown_images:
            problems.append(_ids_error("image", self._unknown_images, self._image_sizes))
        if self._unknown_categories:
            problems.append(_ids_error("category", self._unknown_categories, self._category_ids))
        if self._reasons:
            by_field = ", ".join(f"{n} bad {field}" for field, n in sorted(self._reasons.items()))
            problems.append(f"Invalid result records ({by_field}); the first:\n  " + "\n  ".join(self._shown))
        if problems:
            raise ValueError("\n".join(problems))

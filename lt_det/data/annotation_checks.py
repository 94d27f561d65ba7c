"""Validation and cleaning of an LVIS-format json's images and annotations, in one pass on load.

Policy (what :func:`check_lvis_json` does with each kind of bad ground truth):

Errors (``ValueError``; corrupt data, never silently repaired). Each message names the json file:

1. An image id that occurs more than once in ``images``: the message gives how many ids are
   duplicated and up to 10 of them.
2. An annotation whose ``image_id`` is not an image of the json: names the annotation and image id.
3. A category id that is not in the json's ``categories``, in an annotation's ``category_id`` or
   in an image's ``neg_category_ids`` / ``not_exhaustive_category_ids``: names the annotation (or
   the image and the field), the bad id, and how many category ids the json has and their range.
4. A ``bbox`` that is not 4 finite numbers (NaN, inf, None, missing values) or has a negative
   width or height: names the image, the annotation and the box. (detectron2 would keep or drop
   a box of negative width depending on the random flip.)
5. A ``segmentation`` that is not a non-empty list of polygons, or a polygon with fewer than 3
   points or an odd number of coordinates: names the annotation. (RLE masks are not accepted.)

Repairs and drops (counted, and logged as one ``logger.warning`` per json with the count of each):

* A box with zero width or zero height is dropped (detectron2 drops it as empty after its
  transforms anyway).
* A box that lies partly outside the image ``[0, W] x [0, H]`` (``W``, ``H``: the image record's
  ``width`` and ``height``) is clipped to the image, and its polygons are clipped to the same
  rectangle, so that boxes recomputed from the polygons (detectron2's ``DatasetMapper`` with crop
  augmentation) agree with the clipped box. A polygon of such an annotation that lies inside the
  image is kept as it is; one that no longer encloses any area once clipped is removed.
* A box entirely outside the image, or whose polygons all enclose no area once clipped (fewer
  than 3 points left, or a zero-area outline), is dropped.

Only the box decides whether an annotation is inside: the polygons of an annotation whose box
lies in the image are not inspected (LVIS derives its boxes from the polygons), and they, like the
whole annotation, stay exactly the json's objects. Clipped annotations are shallow copies with a
new ``bbox`` (XYWH, the box intersected with the image) and ``segmentation``; the parsed json is
never modified, since readers of one parse share it.

The class statistics that :mod:`lt_det.data.datasets` counts from annotations (when the json's
categories lack them, and always the number of annotated images) count the kept annotations, so
that they agree with what trains.

The checks cost O(number of annotations) in plain Python; only clipped annotations go through
numpy.
"""
import logging
from collections import Counter
from math import isfinite
from typing import Collection, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

logger = logging.getLogger(__name__)

_MAX_LISTED_IDS = 10
# Counted outcomes of the annotations that are not kept unchanged, in the warning's order.
_EMPTY, _OUTSIDE, _NO_AREA, _CLIPPED = "empty", "outside", "no_area", "clipped"


def check_lvis_json(data: dict, source: str) -> Dict[int, List[dict]]:
    """Validates an LVIS-format json and applies the drop and clip policy of this module.

    Args:
        data: the parsed json: ``images``, ``categories`` and (optionally) ``annotations``.
        source: the json's path, for messages.
    Returns:
        {image id: kept annotations of that image, in json order}; images with no kept annotation
        are absent. An unchanged annotation is the json's own dict; a clipped one is a copy.
    Raises:
        ValueError: on the errors listed in the module docstring.
    """
    cat_ids = {c["id"] for c in data["categories"]}
    images = index_images(data["images"], cat_ids, source)
    annotations = data.get("annotations", [])
    kept, counts = _check_annotations(annotations, images, cat_ids, source)
    _log_counts(counts, len(annotations), source)
    return kept


def index_images(images: Sequence[dict], cat_ids: Collection[int], source: str) -> Dict[int, dict]:
    """{image id: image record}, after checking rule 1 (unique ids) and rule 3 (image-level labels)."""
    by_id = {img["id"]: img for img in images}
    if len(by_id) != len(images):
        duplicated = sorted(i for i, n in Counter(img["id"] for img in images).items() if n > 1)
        raise ValueError(f"{source}: {len(duplicated)} image id(s) occur more than once in 'images', "
                         f"e.g. {duplicated[:_MAX_LISTED_IDS]}")
    for img in images:
        for field in ("neg_category_ids", "not_exhaustive_category_ids"):
            labels = img.get(field, ())
            if not cat_ids.issuperset(labels):
                bad = next(c for c in labels if c not in cat_ids)
                raise ValueError(f"{source}: image {img['id']}'s {field} has category id {bad}, which is not "
                                 f"in the json's categories ({describe_category_ids(cat_ids)})")
    return by_id


def describe_category_ids(cat_ids: Collection[int]) -> str:
    """E.g. "1203 category ids, from 1 to 1203"."""
    if not cat_ids:
        return "no categories"
    return f"{len(cat_ids)} category ids, from {min(cat_ids)} to {max(cat_ids)}"


def unknown_category_error(annotation: dict, cat_ids: Collection[int], source: str) -> ValueError:
    return ValueError(f"{source}: annotation {annotation.get('id')} has category id {annotation['category_id']}, "
                      f"which is not in the json's categories ({describe_category_ids(cat_ids)})")


def check_category_ids(annotations: Iterable[dict], cat_ids: Collection[int], source: str) -> None:
    """Rule 3 alone, for readers that only count annotations: each ``category_id`` is in ``cat_ids``."""
    for a in annotations:
        if a["category_id"] not in cat_ids:
            raise unknown_category_error(a, cat_ids, source)


def _check_annotations(annotations: Sequence[dict], images: Dict[int, dict], cat_ids: Collection[int],
                       source: str) -> Tuple[Dict[int, List[dict]], Dict[str, int]]:
    """The per-annotation rules 2-5 and the drop / clip policy, in one loop (kept inline: it runs
    1.27M times on LVIS v1 train; the errors are built by the functions below).

    Returns:
        kept: {image id: kept annotations}; counts: {outcome: number of annotations}.
    """
    slots = {i: (img["width"], img["height"], []) for i, img in images.items()}
    counts = {_EMPTY: 0, _OUTSIDE: 0, _NO_AREA: 0, _CLIPPED: 0}
    for a in annotations:
        slot = slots.get(a["image_id"])
        if slot is None:
            raise ValueError(f"{source}: annotation {a.get('id')} has image id {a['image_id']}, "
                             f"which is not an image of the json")
        if a["category_id"] not in cat_ids:
            raise unknown_category_error(a, cat_ids, source)
        segm = a.get("segmentation")
        if not isinstance(segm, list) or not segm:
            raise _polygons_error(a, source)
        for p in segm:
            if len(p) < 6 or len(p) % 2:
                raise _polygons_error(a, source)
        try:
            x, y, w, h = a["bbox"]
            valid = isfinite(x) and isfinite(y) and isfinite(w) and isfinite(h) and w >= 0 and h >= 0
        except (KeyError, TypeError, ValueError):  # no box, None, not 4 values, not numbers
            valid = False
        if not valid:
            raise _box_error(a, source)
        width, height, kept = slot
        if w == 0 or h == 0:
            counts[_EMPTY] += 1
        elif x >= 0 and y >= 0 and x + w <= width and y + h <= height:
            kept.append(a)
        else:
            clipped, outcome = _clip_annotation(a, width, height)
            counts[outcome] += 1
            if clipped is not None:
                kept.append(clipped)
    return {i: slot[2] for i, slot in slots.items() if slot[2]}, counts


def _box_error(a: dict, source: str) -> ValueError:
    """Rule 4: ``bbox`` must be 4 finite numbers with non-negative width and height."""
    return ValueError(f"{source}: image {a['image_id']}, annotation {a.get('id')}: bbox {a.get('bbox')} is not "
                      f"[x, y, width, height] of finite numbers with width >= 0 and height >= 0")


def _polygons_error(a: dict, source: str) -> ValueError:
    """Rule 5: ``segmentation`` must be a non-empty list of polygons of >= 3 points (x, y pairs)."""
    segm = a.get("segmentation")
    if not isinstance(segm, list) or not segm:
        return ValueError(f"{source}: annotation {a.get('id')} has no polygons (segmentation {segm!r:.60}); "
                          f"a non-empty list of polygons [x1, y1, x2, y2, ...] is required")
    bad = next(p for p in segm if len(p) < 6 or len(p) % 2)
    return ValueError(f"{source}: annotation {a.get('id')} has a polygon with < 3 points "
                      f"or an odd number of coordinates ({len(bad)})")


def _clip_annotation(a: dict, width: float, height: float) -> Tuple[Optional[dict], str]:
    """An annotation whose box is partly or entirely outside the image, clipped to it.

    Returns:
        (a copy with the clipped ``bbox`` and ``segmentation``, "clipped"), or (None, reason) when
        it is dropped: "outside" (no part of the box in the image) or "no_area" (no polygon left).
    """
    x, y, w, h = a["bbox"]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if x1 <= x0 or y1 <= y0:
        return None, _OUTSIDE
    polygons = []
    for p in a["segmentation"]:
        inside = min(p[0::2]) >= 0 and min(p[1::2]) >= 0 and max(p[0::2]) <= width and max(p[1::2]) <= height
        clipped = p if inside else clip_polygon(p, width, height)
        if clipped is not None:
            polygons.append(clipped)
    if not polygons:
        return None, _NO_AREA
    return {**a, "bbox": [x0, y0, x1 - x0, y1 - y0], "segmentation": polygons}, _CLIPPED


def clip_polygon(polygon: Sequence[float], width: float, height: float) -> Optional[List[float]]:
    """A polygon clipped to the rectangle ``[0, width] x [0, height]`` (Sutherland-Hodgman).

    Exact for rasterisation, also for concave and self-intersecting polygons: clipping against a
    half-plane replaces each excursion of the outline outside it by the segment of the boundary
    line between its exit and re-entry points; excursion and segment form a closed loop in the
    closed outer half-plane, which winds zero times around any point inside, so every inside
    point keeps its winding number (and every outside point gets 0). A rectangle is the
    intersection of 4 half-planes, so rasterising the clipped polygon (either fill rule) gives the
    mask of the unclipped one cropped to the image. The result may run back and forth along the
    image border (zero-width bridges between parts); they cover no area.

    Not shapely: LVIS has self-intersecting polygons, which shapely rejects as invalid geometry:
    its intersection raises (GEOS "TopologyException: side location conflict"), and the usual
    repair, ``buffer(0)``, changes the region (it keeps one of a bow-tie's two lobes).

    Args:
        polygon: flat [x1, y1, x2, y2, ...], >= 3 points.
    Returns:
        the clipped flat list of floats, or None when it encloses no area (fewer than 3 distinct
        points left, or a zero-area outline).
    """
    pts = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    for axis, bound, upper in ((0, 0.0, False), (0, width, True), (1, 0.0, False), (1, height, True)):
        pts = _clip_half_plane(pts, axis, bound, upper)
    pts = _without_repeated_points(pts)
    if len(pts) < 3 or not _encloses_area(pts, width, height):
        return None
    return pts.reshape(-1).tolist()


def _clip_half_plane(pts: np.ndarray, axis: int, bound: float, upper: bool) -> np.ndarray:
    """One Sutherland-Hodgman step: the closed outline ``pts`` (N, 2) clipped to the half-plane
    ``pts[:, axis] <= bound`` (``upper``) or ``>= bound``; returns (M, 2)."""
    depth = bound - pts[:, axis] if upper else pts[:, axis] - bound  # >= 0: inside
    inside = depth >= 0
    if inside.all() or not inside.any():
        return pts if inside.all() else pts[:0]
    n = len(pts)
    following = np.arange(1, n + 1) % n
    edges = np.flatnonzero(inside != inside[following])  # edge i: pts[i] -> pts[i + 1], crossing the line
    # Each crossing point is interpolated from the edge's inside end (a vertex on the line stays
    # exactly itself) and put exactly on the line.
    inside_end = np.where(inside[edges], edges, following[edges])
    outside_end = np.where(inside[edges], following[edges], edges)
    t = depth[inside_end] / (depth[inside_end] - depth[outside_end])
    hits = pts[inside_end] + t[:, None] * (pts[outside_end] - pts[inside_end])
    hits[:, axis] = bound
    # Edge i contributes pts[i] if it is inside, then its crossing point if it has one.
    candidates = np.empty((n, 2, 2))
    candidates[:, 0] = pts
    candidates[edges, 1] = hits
    keep = np.zeros((n, 2), dtype=bool)
    keep[:, 0] = inside
    keep[edges, 1] = True
    return candidates[keep]


def _previous(pts: np.ndarray) -> np.ndarray:
    """(N, ...) -> (N, ...): the previous point of each point of a closed outline."""
    return np.concatenate((pts[-1:], pts[:-1]))


def _without_repeated_points(pts: np.ndarray) -> np.ndarray:
    """(N, 2) -> (M, 2): each point equal to the one before it (cyclically) removed."""
    if len(pts) < 2:
        return pts
    differs = (pts != _previous(pts)).any(axis=1)
    return pts[differs] if differs.any() else pts[:1]


def _encloses_area(pts: np.ndarray, width: float, height: float) -> bool:
    """Whether a clipped outline (N, 2), N >= 3, without repeated points, encloses any area.

    It does not when all its points lie on one line, or when every edge runs along the image
    border and its signed area is 0: with no edge inside the image, the winding number is the same
    at every point of the image, and the signed area is that number times ``width * height``.
    (A shoelace area of 0 alone is no test: a figure-eight's two loops cancel.)
    """
    rel = pts[1:] - pts[0]
    if not (rel[0, 0] * rel[:, 1] - rel[0, 1] * rel[:, 0]).any():
        return False
    x, y = pts[:, 0], pts[:, 1]
    # Bit flags of the border lines each point is on: x = 0, x = width, y = 0, y = height.
    lines = (x == 0) * 1 | (x == width) * 2 | (y == 0) * 4 | (y == height) * 8
    if not lines.all() or not (lines & _previous(lines)).all():
        return True  # an edge inside the image
    signed_area = 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))
    return abs(signed_area) >= 0.5 * width * height


def _log_counts(counts: Dict[str, int], num_annotations: int, source: str) -> None:
    if not any(counts.values()):
        return
    logger.warning(
        f"{source}: of {num_annotations} annotations, dropped {counts[_EMPTY]} with a box of zero width or "
        f"height, {counts[_OUTSIDE]} with a box entirely outside the image and {counts[_NO_AREA]} whose "
        f"polygons enclose no area once clipped to the image; clipped {counts[_CLIPPED]} boxes partly "
        f"outside the image, and their polygons, to the image"
    )

"""Per-class fractal (box-counting) dimension of where a class's boxes lie in the image, the
location statistic of FRACAL.

Every box is reduced to its centre in image-normalised coordinates, cx = (x + w/2) / W and
cy = (y + h/2) / H.  For each grid size d = 1..G the unit square is cut into d x d cells and
N_k(d) counts the cells holding at least one centre of class k.  The dimension D_k is the slope
of the least-squares line

    log N_k(d) = D_k log d + A,    over the grid sizes d with n_k >= d^2,

where n_k is the number of boxes of class k (a finer grid than the class has boxes for would
only measure sparsity).  A class with fewer than 4 boxes, or with a slope below 1, gets D_k = 1
(the released 'box_dim' variant): D_k = 1 is a class seen along a curve, D_k = 2 one seen
everywhere in the image.

Reference: Alexandridis et al., "Fractal Calibration for long-tailed object detection",
CVPR 2025 (FRACAL); released code: kostas1515/FRACAL,
stat_files/calculate_fractality.py (and stat_files/get_statistics.py for the centres).  The
cell rule and the order of the floating-point operations follow that script, so the cell
counts are the same.

Shapes: N boxes, K classes, G the largest grid size (``max_grid``, 64 in the paper).
"""
import json
import math
import os
from typing import Sequence, Tuple

import numpy as np

from lt_det.data.datasets import load_json

__all__ = [
    "normalized_box_centres",
    "occupied_cell_counts",
    "fractal_dimensions",
    "fractal_dimensions_from_json",
    "save_fractal_dimensions",
    "load_fractal_dimensions",
]

# Below this many boxes a class gets the floor value without a fit (the released rule).
MIN_INSTANCES_TO_FIT = 4


def _lookup(table_ids: np.ndarray, query_ids: np.ndarray, field: str, table: str, ann_ids: Sequence) -> np.ndarray:
    """(N,) position in the sorted ``table_ids`` of each of ``query_ids``; ``ValueError`` naming the
    first annotation whose ``field`` is not in the json's ``table``."""
    pos = np.searchsorted(table_ids, query_ids)
    found = pos < len(table_ids)
    found[found] = table_ids[pos[found]] == query_ids[found]
    if not found.all():
        bad = int(np.flatnonzero(~found)[0])
        raise ValueError(f"annotation {ann_ids[bad]} has {field} {int(query_ids[bad])}, "
                         f"which is not in the json's {table}")
    return pos


def normalized_box_centres(dataset: dict) -> Tuple[np.ndarray, np.ndarray]:
    """Class index and image-normalised centre of every annotated box of an LVIS/COCO-format json.

    Args:
        dataset: the parsed json: ``images`` (id, width, height), ``annotations`` (id, image_id,
            category_id, bbox [x, y, w, h] in pixels) and ``categories`` (id).
    Returns:
        class_index: (N,) int64, the category's position among the categories sorted by id
            (0..K-1), in annotation order.
        centres: (N, 2) float64, (cx, cy) = (x/W + (w/W)/2, y/H + (h/H)/2) with the width W and
            height H of the annotation's image.
    Raises:
        ValueError: an annotation's category id or image id is not in the json.
    """
    annotations = dataset["annotations"]
    ann_ids = [a.get("id") for a in annotations]
    category_ids = np.sort(np.array([c["id"] for c in dataset["categories"]], dtype=np.int64))
    image_table = np.array([(im["id"], im["width"], im["height"]) for im in dataset["images"]],
                           dtype=np.int64).reshape(-1, 3)
    image_table = image_table[np.argsort(image_table[:, 0], kind="stable")]

    class_index = _lookup(category_ids, np.array([a["category_id"] for a in annotations], dtype=np.int64),
                          "category_id", "categories", ann_ids)
    image_pos = _lookup(image_table[:, 0], np.array([a["image_id"] for a in annotations], dtype=np.int64),
                        "image_id", "images", ann_ids)
    size = image_table[image_pos, 1:].astype(np.float64)  # (N, 2): W, H
    bbox = np.array([a["bbox"] for a in annotations], dtype=np.float64).reshape(-1, 4)
    # The released statistics script stores x0 = x/W and the width w/W, and the fractality script
    # adds half the width to x0: the same operations in the same order give the same bits.
    centres = bbox[:, :2] / size + (bbox[:, 2:] / size) / 2
    return class_index.astype(np.int64), centres


def _cell_index(coord: np.ndarray, d: int) -> np.ndarray:
    """(N,) cell index along one axis for grid size ``d``, -1 where the coordinate is in no cell.

    The released script puts a coordinate c in cell i iff i*step <= c < (i+1)*step with
    step = 1/d.  The edges j*step are non-decreasing in j, so the last edge <= c (searchsorted,
    side="right", minus one) is that i whenever 0 <= i < d.  Note the top edge d*step may fall
    short of 1 (e.g. d = 49), leaving [d*step, 1) in no cell, exactly as in the released loop.
    """
    step = 1 / d
    edges = np.arange(d + 1, dtype=np.float64) * step
    idx = np.searchsorted(edges, coord, side="right") - 1
    idx[idx >= d] = -1
    return idx


def _check_boxes(class_index: np.ndarray, centres: np.ndarray, num_classes: int,
                 max_grid: int) -> Tuple[np.ndarray, np.ndarray]:
    """(N,) int64 class indices and (N, 2) float64 centres; ``ValueError`` on bad shapes or values."""
    class_index = np.asarray(class_index)
    centres = np.asarray(centres, dtype=np.float64)
    if class_index.ndim != 1 or centres.shape != (len(class_index), 2):
        raise ValueError(f"expected class_index (N,) and centres (N, 2), got {class_index.shape} and {centres.shape}")
    if max_grid < 1:
        raise ValueError(f"max_grid must be >= 1, got {max_grid}")
    class_index = class_index.astype(np.int64)
    if len(class_index) and (class_index.min() < 0 or class_index.max() >= num_classes):
        raise ValueError(f"class indices must be in [0, {num_classes}), got [{class_index.min()}, {class_index.max()}]")
    return class_index, centres


def occupied_cell_counts(class_index: np.ndarray, centres: np.ndarray, num_classes: int,
                         max_grid: int = 64) -> np.ndarray:
    """N_k(d): the number of cells of the d x d grid holding at least one centre of class k.

    Args:
        class_index: (N,) integer class of each box, in 0..K-1.
        centres: (N, 2) float image-normalised (cx, cy) of each box; a centre outside [0, 1) along
            either axis lies in no cell.
        num_classes: K.
        max_grid: G, the largest grid size d.
    Returns:
        (K, G) int64, column d-1 for grid size d.
    """
    class_index, centres = _check_boxes(class_index, centres, num_classes, max_grid)
    counts = np.zeros((num_classes, max_grid), dtype=np.int64)
    for d in range(1, max_grid + 1):
        ix, iy = _cell_index(centres[:, 0], d), _cell_index(centres[:, 1], d)
        inside = (ix >= 0) & (iy >= 0)
        # One flag per (class, cell): K*d*d bytes, cheaper than sorting N keys with np.unique.
        occupied = np.zeros(num_classes * d * d, dtype=bool)
        occupied[(class_index[inside] * d + iy[inside]) * d + ix[inside]] = True
        counts[:, d - 1] = np.count_nonzero(occupied.reshape(num_classes, d * d), axis=1)
    return counts


def fractal_dimensions(class_index: np.ndarray, centres: np.ndarray, num_classes: int,
                       max_grid: int = 64) -> np.ndarray:
    """Box-counting dimension of each class's box centres (the module docstring's rule).

    Args:
        class_index: (N,) integer class of each box, in 0..K-1.
        centres: (N, 2) float image-normalised (cx, cy) of each box; a centre outside [0, 1) along
            either axis lies in no cell but still counts towards its class's n_k.
        num_classes: K.
        max_grid: G, the largest grid size d.
    Returns:
        (K,) float64 dimensions, each >= 1.
    Raises:
        ValueError: bad shapes or class indices, or a class with >= 4 boxes that has none inside
            the grid at a grid size used in its fit (log 0; the released script fails there too).
    """
    class_index, centres = _check_boxes(class_index, centres, num_classes, max_grid)
    occupied_cells = occupied_cell_counts(class_index, centres, num_classes, max_grid)
    grid_sizes = np.arange(1, max_grid + 1)
    counts = np.bincount(class_index, minlength=num_classes)
    dims = np.ones(num_classes, dtype=np.float64)
    fitted = counts >= MIN_INSTANCES_TO_FIT
    if not fitted.any():
        return dims
    # Grid sizes in each fitted class's fit: n_k >= d^2, a prefix 1..floor(sqrt n_k) (>= 2 sizes).
    used = counts[fitted, None] >= grid_sizes[None, :] ** 2  # (K', G)
    n_cells = occupied_cells[fitted]
    empty = used & (n_cells == 0)
    if empty.any():
        k, d = np.argwhere(empty)[0]
        raise ValueError(f"class {int(np.flatnonzero(fitted)[k])} has {counts[fitted][k]} boxes but none inside "
                         f"the {d + 1}x{d + 1} grid of [0, 1)^2, so log N(d) is undefined")
    # Closed-form least squares of y = log N on x = log d over each class's used grid sizes: the
    # released curve_fit of the same linear model converges to this solution (to its default
    # tolerance, ~1e-8), which the closed form gives exactly.
    x = np.log(grid_sizes.astype(np.float64))[None, :]
    y = np.log(np.maximum(n_cells, 1).astype(np.float64))
    n_used = used.sum(axis=1, keepdims=True)
    dx = np.where(used, x - (x * used).sum(axis=1, keepdims=True) / n_used, 0.0)
    dy = np.where(used, y - (y * used).sum(axis=1, keepdims=True) / n_used, 0.0)
    slopes = (dx * dy).sum(axis=1) / (dx * dx).sum(axis=1)
    dims[fitted] = np.maximum(slopes, 1.0)
    return dims


def fractal_dimensions_from_json(path: str, max_grid: int = 64) -> np.ndarray:
    """(K,) dimensions of the classes of an LVIS/COCO-format json, ordered by category id."""
    dataset = load_json(path)
    class_index, centres = normalized_box_centres(dataset)
    return fractal_dimensions(class_index, centres, len(dataset["categories"]), max_grid)


def save_fractal_dimensions(path: str, dims: Sequence[float], category_ids: Sequence[int], source: str,
                            max_grid: int = 64) -> None:
    """Writes ``{"source", "max_grid", "categories": [{"id", "fractal_dimension"}, ...]}`` to ``path``,
    sorted by category id.

    Args:
        dims: (K,) dimension of each class, aligned with ``category_ids``.
        category_ids: (K,) the classes' category ids.
        source: the json the dimensions were computed from.
        max_grid: the G they were computed with.
    """
    dims = np.asarray(dims, dtype=np.float64)
    category_ids = [int(i) for i in category_ids]
    if dims.shape != (len(category_ids),):
        raise ValueError(f"{dims.shape} dimensions for {len(category_ids)} category ids")
    entries = sorted(zip(category_ids, dims.tolist()))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"source": source, "max_grid": int(max_grid),
                   "categories": [{"id": i, "fractal_dimension": d} for i, d in entries]}, f, indent=1)


def load_fractal_dimensions(path: str, num_classes: int) -> np.ndarray:
    """(K,) float64 dimensions from a :func:`save_fractal_dimensions` file, ordered by category id
    (the contiguous class index).

    Raises:
        FileNotFoundError: no such file (the message says how to make one).
        ValueError: the file has a number of classes other than ``num_classes``, or a value that
            is not a finite number >= 1.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"fractal dimension file not found: {path}; make it with "
            f"`python tools/fractal_dimension.py --json <train json> --output {path}`")
    with open(path) as f:
        entries = sorted(json.load(f)["categories"], key=lambda c: c["id"])
    if len(entries) != num_classes:
        raise ValueError(f"{path} has fractal dimensions for {len(entries)} classes, expected {num_classes}")
    dims = np.array([c["fractal_dimension"] for c in entries], dtype=np.float64)
    bad = [c["id"] for c, d in zip(entries, dims) if not (math.isfinite(d) and d >= 1)]
    if bad:
        raise ValueError(f"{path}: fractal dimensions must be finite and >= 1; categories {bad[:10]} are not")
    return dims

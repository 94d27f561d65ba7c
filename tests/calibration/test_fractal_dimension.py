"""lt_det.calibration.fractal_dimension (FRACAL's per-class box-counting dimension) and
tools/fractal_dimension.py, on point sets whose cell counts N(d) are worked out by hand."""
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from lt_det.calibration.fractal_dimension import (
    fractal_dimensions,
    fractal_dimensions_from_json,
    load_fractal_dimensions,
    normalized_box_centres,
    occupied_cell_counts,
    save_fractal_dimensions,
)
from tiny_dataset import REPO


def _lattice_1d(m):
    """The m cell centres (i + 0.5)/m of [0, 1)."""
    return (np.arange(m) + 0.5) / m


def _slope(x, y):
    """Least-squares slope of y on x (the textbook formula, for the expected values)."""
    xm, ym = sum(x) / len(x), sum(y) / len(y)
    return sum((a - xm) * (b - ym) for a, b in zip(x, y)) / sum((a - xm) ** 2 for a in x)


def test_uniform_lattice_has_dimension_two():
    # 256 centres on the 16 x 16 lattice (i + 0.5)/16.  For d <= 16 a cell [j/d, (j+1)/d) has
    # width 1/d >= 1/16, the lattice spacing, and any half-open interval of that width inside
    # [0, 1] holds one of the points (i + 0.5)/16 (the first point at or after its left end is
    # less than one spacing away, and lies in [1/32, 31/32]).  No point falls on an edge: j/d =
    # k/32 with k odd needs 32 | d.  So N(d) = d^2 for d = 1..16, exactly the grid sizes with
    # n = 256 >= d^2, and log N(d) = 2 log d: D = 2.
    xs = _lattice_1d(16)
    centres = np.stack(np.meshgrid(xs, xs), axis=-1).reshape(-1, 2)
    class_index = np.zeros(len(centres), dtype=np.int64)
    n_cells = occupied_cell_counts(class_index, centres, 1)
    assert n_cells.shape == (1, 64)
    np.testing.assert_array_equal(n_cells[0, :16], np.arange(1, 17) ** 2)
    assert fractal_dimensions(class_index, centres, 1)[0] == pytest.approx(2.0, abs=1e-12)


def test_centres_on_a_line_have_dimension_one():
    # 64 centres (i + 0.5)/64 along x at cy = 0.3: by the lattice argument above each of the d
    # columns holds a point for every d <= 64, and all lie in one row, so N(d) = d; the fit uses
    # d = 1..8 (64 >= d^2) and the slope is 1.
    centres = np.stack([_lattice_1d(64), np.full(64, 0.3)], axis=1)
    class_index = np.zeros(64, dtype=np.int64)
    np.testing.assert_array_equal(occupied_cell_counts(class_index, centres, 1)[0], np.arange(1, 65))
    assert fractal_dimensions(class_index, centres, 1)[0] == pytest.approx(1.0, abs=1e-12)


def test_all_boxes_at_one_point_are_floored_at_one():
    # One occupied cell at every grid size: the slope is 0, below the floor.
    centres = np.tile([[0.3, 0.6]], (10, 1))
    class_index = np.zeros(10, dtype=np.int64)
    np.testing.assert_array_equal(occupied_cell_counts(class_index, centres, 1)[0], np.ones(64))
    assert fractal_dimensions(class_index, centres, 1)[0] == 1.0


def test_classes_with_fewer_than_four_boxes_get_one():
    # Class 0: 3 boxes in three quadrants (a fit over d = 1 alone would be undefined); class 1:
    # none; class 2: 4 boxes at the quadrant centres, the smallest class that is fitted: N(1) = 1,
    # N(2) = 4 over d = 1, 2 (4 >= d^2), slope log 4 / log 2 = 2.
    quadrants = [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]
    centres = np.array(quadrants[:3] + quadrants)
    class_index = np.array([0, 0, 0, 2, 2, 2, 2])
    dims = fractal_dimensions(class_index, centres, 3)
    assert dims[0] == 1.0 and dims[1] == 1.0
    assert dims[2] == pytest.approx(2.0, abs=1e-12)


def test_fit_uses_exactly_the_grid_sizes_with_n_at_least_d_squared():
    # 9 boxes: one at each quadrant centre, 5 more at (0.25, 0.25).  0.25 is in cell 0 and 0.75
    # in cell 1 of d = 2, and in cells 0 and 2 of d = 3 (0 <= 0.25 < 1/3, 2/3 <= 0.75 < 1), so
    # N(1), N(2), N(3) = 1, 4, 4; d = 3 is in the fit (9 >= 9), d = 4 is not (9 < 16).  Without
    # d = 3 the slope would be 2.
    centres = np.array([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]] + [[0.25, 0.25]] * 5)
    class_index = np.zeros(9, dtype=np.int64)
    np.testing.assert_array_equal(occupied_cell_counts(class_index, centres, 1, max_grid=3)[0], [1, 4, 4])
    expected = _slope([0.0, math.log(2), math.log(3)], [0.0, math.log(4), math.log(4)])
    assert 1 < expected < 2
    assert fractal_dimensions(class_index, centres, 1)[0] == pytest.approx(expected, abs=1e-12)


def test_cell_rule_at_the_edges():
    # Class 0: 0.5 is in cell 1 of d = 2 (e_1 = 0.5 <= 0.5 < 1), with 0.75: one cell, not two.
    # Class 1: x = 1.0 and class 2: y < 0 are in no cell of any grid.
    # Class 3: 49 * (1/49) rounds to just below 1, so the top cells of d = 49 end there and a
    # centre at that value is in no cell of d = 49, yet in cell 47 of d = 48 (48 * (1/48) == 1).
    top_49 = 49 * (1 / 49)
    assert top_49 < 1.0 and 47 * (1 / 48) <= top_49 < 48 * (1 / 48) == 1.0
    centres = np.array([[0.5, 0.25], [0.75, 0.25], [1.0, 0.5], [0.2, -0.1], [top_49, 0.5]])
    n_cells = occupied_cell_counts(np.array([0, 0, 1, 2, 3]), centres, 4)
    assert n_cells[0, 1] == 1
    np.testing.assert_array_equal(n_cells[1:3], 0)
    assert n_cells[3, 47] == 1 and n_cells[3, 48] == 0


def test_class_with_no_centre_inside_the_grid_is_an_error():
    centres = np.tile([[1.0, 0.5]], (4, 1))
    with pytest.raises(ValueError, match="class 0 has 4 boxes but none inside"):
        fractal_dimensions(np.zeros(4, dtype=np.int64), centres, 1)


def test_bad_class_index_is_an_error():
    with pytest.raises(ValueError, match=re.escape("class indices must be in [0, 2)")):
        fractal_dimensions(np.array([0, 2]), np.zeros((2, 2)), 2)


def _tiny_json():
    """2 images of different sizes, 3 categories with non-contiguous, unsorted ids (sorted: 2, 5,
    10 -> class 0, 1, 2)."""
    return {
        "images": [{"id": 7, "width": 200, "height": 100}, {"id": 3, "width": 50, "height": 40}],
        "categories": [{"id": 10}, {"id": 2}, {"id": 5}],
        "annotations": [
            # (20/200 + (40/200)/2, 10/100 + (30/100)/2) = (0.1 + 0.1, 0.1 + 0.15)
            {"id": 1, "image_id": 7, "category_id": 10, "bbox": [20, 10, 40, 30]},
            # the whole 50 x 40 image: (0.5, 0.5)
            {"id": 2, "image_id": 3, "category_id": 2, "bbox": [0, 0, 50, 40]},
            # (25/50 + (10/50)/2, 30/40 + (4/40)/2) = (0.5 + 0.1, 0.75 + 0.05)
            {"id": 3, "image_id": 3, "category_id": 5, "bbox": [25, 30, 10, 4]},
        ],
    }


def test_normalized_box_centres_by_hand():
    class_index, centres = normalized_box_centres(_tiny_json())
    assert class_index.dtype == np.int64 and centres.dtype == np.float64
    np.testing.assert_array_equal(class_index, [2, 0, 1])
    np.testing.assert_allclose(centres, [[0.2, 0.25], [0.5, 0.5], [0.6, 0.8]], rtol=0, atol=1e-15)


@pytest.mark.parametrize("field, bad_id, message", [
    ("category_id", 4, "annotation 2 has category_id 4, which is not in the json's categories"),
    ("image_id", 8, "annotation 2 has image_id 8, which is not in the json's images"),
])
def test_unknown_ids_are_errors(field, bad_id, message):
    dataset = _tiny_json()
    dataset["annotations"][1][field] = bad_id
    with pytest.raises(ValueError, match=re.escape(message)):
        normalized_box_centres(dataset)


def test_save_load_round_trip(tmp_path):
    path = str(tmp_path / "fd.json")
    save_fractal_dimensions(path, [1.5, 1.0, 2.0], [10, 2, 5], "train.json", max_grid=32)
    with open(path) as f:
        saved = json.load(f)
    assert saved == {"source": "train.json", "max_grid": 32, "categories": [
        {"id": 2, "fractal_dimension": 1.0}, {"id": 5, "fractal_dimension": 2.0},
        {"id": 10, "fractal_dimension": 1.5}]}
    np.testing.assert_array_equal(load_fractal_dimensions(path, 3), [1.0, 2.0, 1.5])


def test_load_orders_by_category_id(tmp_path):
    path = tmp_path / "fd.json"
    path.write_text(json.dumps({"source": "train.json", "max_grid": 64, "categories": [
        {"id": 9, "fractal_dimension": 1.25}, {"id": 4, "fractal_dimension": 1.75}]}))
    np.testing.assert_array_equal(load_fractal_dimensions(str(path), 2), [1.75, 1.25])


def test_load_errors(tmp_path):
    path = str(tmp_path / "fd.json")
    save_fractal_dimensions(path, [1.5, 1.0], [1, 2], "train.json")
    with pytest.raises(ValueError, match=re.escape(f"{path} has fractal dimensions for 2 classes, expected 3")):
        load_fractal_dimensions(path, 3)
    save_fractal_dimensions(path, [1.5, 0.5], [1, 2], "train.json")
    with pytest.raises(ValueError, match=re.escape("categories [2] are not")):
        load_fractal_dimensions(path, 2)
    missing = str(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match=re.escape(f"{missing}; make it with `python tools/fractal_dimension.py")):
        load_fractal_dimensions(missing, 2)


def _lattice_json():
    """One 160 x 160 image; category 3: 16 boxes centred on the 4 x 4 lattice (i + 0.5)/4 (D = 2 by
    the lattice argument); category 1: 3 boxes (D = 1)."""
    boxes = [(3, [40 * i + 10, 40 * j + 10, 20, 20]) for i in range(4) for j in range(4)]
    boxes += [(1, [0, 0, 10, 10])] * 3
    return {"images": [{"id": 1, "width": 160, "height": 160}],
            "categories": [{"id": 3}, {"id": 1}],
            "annotations": [{"id": k, "image_id": 1, "category_id": c, "bbox": b} for k, (c, b) in enumerate(boxes)]}


def test_from_json_and_tool(tmp_path):
    train = tmp_path / "train.json"
    train.write_text(json.dumps(_lattice_json()))
    dims = fractal_dimensions_from_json(str(train))
    assert dims[0] == 1.0 and dims[1] == pytest.approx(2.0, abs=1e-12)

    out = tmp_path / "out" / "fd.json"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools/fractal_dimension.py"), "--json", str(train),
                           "--output", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 classes" in proc.stdout and "1 classes at the floor value 1" in proc.stdout
    saved = json.loads(out.read_text())
    assert saved["source"] == str(train) and saved["max_grid"] == 64
    assert [c["id"] for c in saved["categories"]] == [1, 3]
    np.testing.assert_allclose(load_fractal_dimensions(str(out), 2), [1.0, 2.0], rtol=0, atol=1e-12)

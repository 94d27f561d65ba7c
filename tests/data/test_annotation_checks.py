"""The validation and cleaning of LVIS-format jsons on load (lt_det.data.annotation_checks)."""
import json
import logging
import math
import re

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from pycocotools import mask as mask_utils

from lt_det.data import get_class_stats, load_lvis_format_json, register_lvis_format
from lt_det.data.annotation_checks import clip_polygon
from lt_det.data.datasets import load_json, class_statistics, parse_each_json_once

CHECKS_LOGGER = "lt_det.data.annotation_checks"
CATEGORIES = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}]


def _image(image_id, width=10, height=10, **labels):
    return {"id": image_id, "width": width, "height": height, "file_name": f"{image_id}.jpg", **labels}


def _ann(ann_id, image_id, bbox, segmentation, category_id=1):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox,
            "segmentation": segmentation, "area": 1.0}


def _square(x0, y0, x1, y1):
    """(bbox XYWH, [polygon]) of an axis-aligned rectangle."""
    return [x0, y0, x1 - x0, y1 - y0], [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _write(tmp_path, images, annotations, name="gt.json", categories=CATEGORIES):
    path = tmp_path / name
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def _load(path):
    """Dataset dicts of a json; its image root is its folder (the images need not exist)."""
    return load_lvis_format_json(str(path), str(path.parent))


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == CHECKS_LOGGER and r.levelno == logging.WARNING]


def _rasterise(polygons, height, width):
    """(height, width) bool mask of flat polygons, as pycocotools rasterises them on that canvas."""
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))).astype(bool)


def _shoelace(flat):
    x, y = np.asarray(flat[0::2], dtype=float), np.asarray(flat[1::2], dtype=float)
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


# Rule 1: duplicate image ids.

def test_duplicate_image_ids_are_an_error_naming_file_ids_and_count(tmp_path):
    images = [_image(i) for i in (1, 2, 2, 3, 3, 3, 4)]
    path = _write(tmp_path, images, [], name="dups.json")
    with pytest.raises(ValueError, match=r"dups\.json: 2 image id\(s\) occur more than once.*\[2, 3\]"):
        _load(path)


def test_many_duplicate_image_ids_list_ten(tmp_path):
    images = [_image(i) for i in range(100, 112)] * 2
    with pytest.raises(ValueError, match="12 image id") as error:
        _load(_write(tmp_path, images, []))
    assert str(error.value).endswith(f"e.g. {list(range(100, 110))}")


# Rule 2: annotations of images the json does not have.

def test_annotation_of_an_unknown_image_is_an_error(tmp_path):
    box, poly = _square(1, 1, 4, 4)
    path = _write(tmp_path, [_image(1)], [_ann(1, 1, box, poly), _ann(7, 99, box, poly)], name="orphan.json")
    with pytest.raises(ValueError, match=r"orphan\.json: annotation 7 has image id 99, which is not an image"):
        _load(path)


# Rule 3: unknown category ids.

def test_annotation_with_an_unknown_category_is_an_error_naming_the_valid_ids(tmp_path):
    box, poly = _square(1, 1, 4, 4)
    path = _write(tmp_path, [_image(1)], [_ann(8, 1, box, poly, category_id=999)], name="cats.json")
    with pytest.raises(ValueError, match=r"cats\.json: annotation 8 has category id 999, .*"
                                         r"3 category ids, from 1 to 3"):
        _load(path)


@pytest.mark.parametrize("field", ["neg_category_ids", "not_exhaustive_category_ids"])
def test_image_label_with_an_unknown_category_is_an_error(tmp_path, field):
    path = _write(tmp_path, [_image(1), _image(5, **{field: [2, 999]})], [], name="labels.json")
    with pytest.raises(ValueError, match=rf"labels\.json: image 5's {field} has category id 999, .*"
                                         r"3 category ids, from 1 to 3"):
        _load(path)


def test_counted_statistics_name_an_unknown_category():
    """class_statistics' counting path (no counts in the categories) used to raise a bare KeyError."""
    data = {"categories": [{"id": 5, "name": "a"}, {"id": 2, "name": "b"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 5}, {"id": 4, "image_id": 1, "category_id": 999}]}
    with pytest.raises(ValueError, match=r"x\.json: annotation 4 has category id 999, .*2 category ids, from 2 to 5"):
        class_statistics(data, source="x.json")


# Rule 4: corrupt boxes.

@pytest.mark.parametrize("bbox", [[1, 1, -1, 2], [1, 1, 2, -0.5], [1, 1, math.nan, 2], [1, math.inf, 2, 2],
                                  None, [1, 2, 3], [1, None, 2, 2], [1, 2, 3, 4, 5]])
def test_corrupt_box_is_an_error_naming_image_annotation_and_box(tmp_path, bbox):
    _, poly = _square(1, 1, 4, 4)
    path = _write(tmp_path, [_image(3)], [_ann(4, 3, bbox, poly)], name="boxes.json")
    with pytest.raises(ValueError, match=rf"boxes\.json: image 3, annotation 4: bbox {re.escape(str(bbox))} "):
        _load(path)


# Rule 5: polygons that are not polygons (an error), the drop policy and clipping.

@pytest.mark.parametrize("segmentation", [[[1, 1, 4, 1]], [[1, 1, 4, 1, 4]], [[1, 1, 4, 1, 4, 4], [1, 1]], [],
                                          {"size": [10, 10], "counts": "abc"}])
def test_malformed_polygons_are_an_error_naming_the_annotation(tmp_path, segmentation):
    path = _write(tmp_path, [_image(1)], [_ann(5, 1, [1, 1, 3, 3], segmentation)], name="polys.json")
    with pytest.raises(ValueError, match=r"polys\.json: annotation 5 has (a polygon with < 3 points|no polygons)"):
        _load(path)


def test_drops_are_counted_in_one_warning(tmp_path, caplog):
    inside = _ann(1, 1, *_square(1, 1, 4, 4))
    l_shape_around_the_corner = [[-10, -10, 5, -10, 5, -1, -1, -1, -1, 5, -10, 5]]  # box overlaps the image
    annotations = [
        inside,
        _ann(2, 1, [2, 2, 0, 3], _square(2, 2, 3, 5)[1]),  # zero width
        _ann(3, 1, [2, 2, 3, 0], _square(2, 2, 5, 3)[1]),  # zero height
        _ann(4, 1, *_square(-6, 2, -1, 5)),  # entirely left of the image
        _ann(5, 2, *_square(3, 12, 5, 14)),  # entirely below the 10-high image 2
        _ann(6, 1, *_square(8, 8, 13, 9)),  # partly outside: clipped
        _ann(7, 2, [-10, -10, 15, 15], l_shape_around_the_corner),  # no polygon area in the image
    ]
    path = _write(tmp_path, [_image(1), _image(2, width=20)], annotations, name="drops.json")
    with caplog.at_level(logging.WARNING):
        dicts = _load(path)
    assert _warnings(caplog) == [
        f"{path}: of 7 annotations, dropped 2 with a box of zero width or height, 2 with a box entirely outside "
        "the image and 1 whose polygons enclose no area once clipped to the image; clipped 1 boxes partly "
        "outside the image, and their polygons, to the image"]
    assert [len(d["annotations"]) for d in dicts] == [2, 0]
    assert dicts[0]["annotations"][0]["bbox"] == inside["bbox"]
    assert dicts[0]["annotations"][1]["bbox"] == [8, 8, 2, 1]


def test_clipped_square_by_hand(tmp_path):
    """Sutherland-Hodgman by hand on [[-2,-2, 4,-2, 4,4, -2,4]] in a 10 x 10 image. Against x >= 0:
    (-2,-2)->(4,-2) enters at (0,-2); (4,-2) kept; (4,4) kept, then (4,4)->(-2,4) leaves at (0,4):
    (0,-2) (4,-2) (4,4) (0,4). Against y >= 0: (4,-2)->(4,4) enters at (4,0); (4,4) and (0,4) kept;
    (0,4)->(0,-2) leaves at (0,0): (4,0) (4,4) (0,4) (0,0). x <= 10 and y <= 10 change nothing.
    A polygon crossing the right border of a 20 x 10 image: (15,2) kept, (15,2)->(25,2) leaves at
    (20,2), (25,8)->(15,8) enters at (20,8), (15,8) kept."""
    inside_polygon = [5, 5, 6, 5, 6, 6]
    annotations = [_ann(1, 1, [-2, -2, 6, 6], [[-2, -2, 4, -2, 4, 4, -2, 4], inside_polygon]),
                   _ann(2, 2, [15, 2, 10, 6], [[15, 2, 25, 2, 25, 8, 15, 8]])]
    path = _write(tmp_path, [_image(1), _image(2, width=20)], annotations)
    with parse_each_json_once():
        dicts = _load(path)
        data = load_json(str(path))
    first, second = dicts[0]["annotations"][0], dicts[1]["annotations"][0]
    assert first["bbox"] == [0, 0, 4, 4]
    assert first["segmentation"] == [[4, 0, 4, 4, 0, 4, 0, 0], inside_polygon]
    assert first["segmentation"][1] is data["annotations"][0]["segmentation"][1]  # inside: kept as it is
    assert second["bbox"] == [15, 2, 5, 6]
    assert second["segmentation"] == [[15, 2, 20, 2, 20, 8, 15, 8]]
    # The parsed json, shared by its readers, is not modified.
    assert data["annotations"][0]["bbox"] == [-2, -2, 6, 6]
    assert data["annotations"][1]["segmentation"] == [[15, 2, 25, 2, 25, 8, 15, 8]]


# Concave and self-intersecting polygons: clipping keeps the rasterised mask. Their vertices and
# border crossings are on pycocotools' 1/5-pixel grid, with slopes 0, 1/2 or infinite, and their
# negative coordinates are on axis-aligned edges: pycocotools rounds vertices to that grid
# (towards zero when negative), so for other polygons its rasterisation of the unclipped polygon
# itself moves pixels along edges by the rounding, by a pixel here and there.
CLIP_CASES = {
    # A "U" over the top-left corner (concave).
    "concave_u": [-3, -4, 12, -4, 12, 10, 8, 10, 8, 3, 3, 3, 3, 10, -3, 10],
    # A "C" whose back is left of the image: two parts in the image, joined along its border.
    "concave_c": [4, 1, -4, 1, -4, 12, 4, 12, 4, 9, -2, 9, -2, 4, 4, 4],
    # A bow-tie across the right border: two opposite lobes (signed area 0, before and after).
    "bow_tie": [10, 2, 26, 10, 10, 10, 26, 2],
    # A self-intersecting outline over the bottom-right corner whose loops overlap (winding 2).
    "double_loop": [14, 10, 24, 10, 24, 20, 16, 20, 16, 12, 22, 12, 22, 18, 14, 18],
}


@pytest.mark.parametrize("name", sorted(CLIP_CASES))
def test_clipping_keeps_the_rasterised_mask(name):
    width, height, polygon = 20, 16, CLIP_CASES[name]
    clipped = clip_polygon(polygon, width, height)
    xs, ys = clipped[0::2], clipped[1::2]
    assert min(xs) >= 0 and min(ys) >= 0 and max(xs) <= width and max(ys) <= height
    reference = _rasterise([polygon], height, width)  # the canvas drops what is outside the image
    assert reference.any() and not (min(polygon[0::2]) >= 0 and min(polygon[1::2]) >= 0
                                    and max(polygon[0::2]) <= width and max(polygon[1::2]) <= height)
    assert np.array_equal(_rasterise([clipped], height, width), reference)


def test_bow_tie_is_kept_though_its_signed_area_is_zero():
    clipped = clip_polygon(CLIP_CASES["bow_tie"], 20, 16)
    assert clipped is not None and _shoelace(clipped) == 0


@pytest.mark.parametrize("seed", range(5))
def test_clipped_area_of_a_simple_polygon_equals_shapely_intersection(seed):
    """A random star-shaped (simple, valid) polygon, float vertices, around a border of the image."""
    from shapely.geometry import Polygon, box

    rng = np.random.default_rng(seed)
    width, height = 30.0, 20.0
    centre = rng.uniform([-5, -5], [width + 5, height + 5])
    angles = np.sort(rng.uniform(0, 2 * np.pi, 12))
    radii = rng.uniform(3, 15, 12)
    points = centre + np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    polygon = points.reshape(-1).tolist()
    expected = Polygon(points).intersection(box(0, 0, width, height)).area
    clipped = clip_polygon(polygon, width, height)
    assert (0 if clipped is None else abs(_shoelace(clipped))) == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_concave_c_area_equals_shapely_intersection():
    from shapely.geometry import Polygon, box

    polygon = CLIP_CASES["concave_c"]
    expected = Polygon(np.reshape(polygon, (-1, 2))).intersection(box(0, 0, 20, 16)).area
    assert expected == 24 and abs(_shoelace(clip_polygon(polygon, 20, 16))) == 24


def test_polygons_with_no_area_in_the_image_are_none():
    assert clip_polygon([-5, -5, -1, -5, -1, -1], 10, 10) is None  # entirely outside
    assert clip_polygon([-10, -10, 5, -10, 5, -1, -1, -1, -1, 5, -10, 5], 10, 10) is None  # around a corner
    assert clip_polygon([-4, 2, 0, 2, 0, 6], 10, 10) is None  # touches the border only
    # Outlines of >= 3 distinct points with no area: along one border, and along two (there and back).
    along_one_border, along_two_borders = [-4, 2, 0, 2, 0, 4, -2, 5, 0, 6], [0, 5, 0, 0, 5, 0, -3, -3]
    assert not _rasterise([along_one_border, along_two_borders], 10, 10).any()
    assert clip_polygon(along_one_border, 10, 10) is None
    assert clip_polygon(along_two_borders, 10, 10) is None
    assert clip_polygon([-2, 5, 5, 5, 3, 5], 10, 10) is None  # a line into the image
    # A polygon around the whole image is the image's rectangle (all its edges on the border).
    assert abs(_shoelace(clip_polygon([-1, -1, 11, -1, 11, 11, -1, 11], 10, 10))) == 100


def test_inside_annotations_are_the_json_objects_unchanged(tmp_path, caplog):
    annotations = [_ann(1, 1, [0, 0, 10, 10], [[0, 0, 10, 0, 10, 10, 0, 10]]),  # touches every border
                   _ann(2, 1, [1.25, 2.5, 3, 3], [[1.25, 2.5, 4.25, 2.5, 4.25, 5.5], [2, 3, 3, 3, 3, 4]], 3)]
    path = _write(tmp_path, [_image(1)], annotations)
    with caplog.at_level(logging.WARNING), parse_each_json_once():
        dicts = _load(path)
        data = load_json(str(path))
    assert _warnings(caplog) == []
    for obj, ann in zip(dicts[0]["annotations"], data["annotations"]):
        assert obj["bbox"] is ann["bbox"] and obj["segmentation"] is ann["segmentation"]
    fields = ("bbox", "segmentation")
    assert (json.dumps([{k: o[k] for k in fields} for o in dicts[0]["annotations"]])
            == json.dumps([{k: a[k] for k in fields} for a in annotations]))
    assert all(type(v) is int for v in dicts[0]["annotations"][0]["segmentation"][0])  # no float conversion


def test_synthetic_set_loads_without_warning_or_change(tiny_dataset_root, caplog):
    root = tiny_dataset_root / "synthetic_lt"
    for split in ("train", "val"):
        path = root / f"synthetic_lt_{split}.json"
        data = json.loads(path.read_text())
        with caplog.at_level(logging.WARNING):
            dicts = load_lvis_format_json(str(path), str(root))
        assert _warnings(caplog) == []
        objs = [(o["bbox"], o["segmentation"]) for d in dicts for o in d["annotations"]]
        by_image = sorted(data["annotations"], key=lambda a: a["image_id"])  # stable: json order per image
        assert objs == [(a["bbox"], a["segmentation"]) for a in by_image]


# The class statistics count the kept annotations.

def _register(name, path):
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_lvis_format(name, str(path), str(path.parent))


@pytest.mark.parametrize("statistics_first", [True, False])
def test_counted_statistics_are_those_of_the_kept_annotations(tmp_path, caplog, statistics_first):
    """Within one parse context, the statistics (read first by the trainer's loss, or after the
    dicts) count what trains, and the json's drops are logged once."""
    annotations = [_ann(1, 1, *_square(1, 1, 4, 4)), _ann(2, 1, [1, 1, 0, 2], _square(1, 1, 2, 3)[1], 2),
                   _ann(3, 2, [1, 1, 2, 0], _square(1, 1, 3, 2)[1], 2), _ann(4, 3, *_square(1, 1, 4, 4), 3),
                   _ann(5, 3, *_square(2, 2, 5, 5), 3), _ann(6, 2, *_square(-2, 1, 3, 3), 1)]
    name = f"checked_stats_{statistics_first}"
    _register(name, _write(tmp_path, [_image(i) for i in (1, 2, 3)], annotations))
    with caplog.at_level(logging.WARNING), parse_each_json_once():
        if statistics_first:
            stats = get_class_stats(name)
        DatasetCatalog.get(name)
        if not statistics_first:
            stats = get_class_stats(name)
    assert stats.instance_count.tolist() == [2, 0, 2]
    assert stats.image_count.tolist() == [2, 0, 1]
    assert stats.num_images == 3  # image 2 keeps its clipped annotation 6
    assert len(_warnings(caplog)) == 1 and "dropped 2 with a box of zero width" in _warnings(caplog)[0]

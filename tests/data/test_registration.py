"""Registration of LVIS-format jsons and the class statistics written to metadata."""
import copy
import json
import logging
import os
import shutil

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from lt_det.data import get_class_stats, register_lvis_format
from lt_det.data.datasets import class_statistics, parse_each_json_once
from tiny_dataset import TINY_NUM_CLASSES


def _load(path):
    with open(path) as f:
        return json.load(f)


def _register(name, json_file, image_root):
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_lvis_format(name, str(json_file), str(image_root))


def test_dataset_dicts_and_statistics(tiny_dataset_root):
    root = tiny_dataset_root / "synthetic_lt"
    data = _load(root / "synthetic_lt_train.json")
    dicts = DatasetCatalog.get("synthetic_lt_train")
    assert len(dicts) == len(data["images"])
    assert sum(len(d["annotations"]) for d in dicts) == len(data["annotations"])
    stats = get_class_stats("synthetic_lt_train")
    cats = sorted(data["categories"], key=lambda c: c["id"])
    assert stats.image_count.tolist() == [c["image_count"] for c in cats]
    assert stats.instance_count.tolist() == [c["instance_count"] for c in cats]
    assert stats.frequency.tolist() == [c["frequency"] for c in cats]
    assert stats.num_images == len({a["image_id"] for a in data["annotations"]})
    # The image-level labels are contiguous ids of the absent classes.
    for d in dicts[:20]:
        present = {a["category_id"] for a in d["annotations"]}
        assert sorted(set(range(stats.num_classes)) - present) == sorted(d["neg_category_ids"])


def test_non_contiguous_ids_and_missing_counts_are_handled(tiny_dataset_root, tmp_path, caplog):
    """Category ids with gaps map to contiguous ids; absent counts are computed and logged."""
    root = tiny_dataset_root / "synthetic_lt"
    data = _load(root / "synthetic_lt_train.json")
    original = sorted(copy.deepcopy(data["categories"]), key=lambda c: c["id"])
    for c in data["categories"]:
        c["id"] = c["id"] * 10 + 7
        for key in ("image_count", "instance_count", "frequency"):
            del c[key]
    for a in data["annotations"]:
        a["category_id"] = a["category_id"] * 10 + 7
    for img in data["images"]:
        img["neg_category_ids"] = [c * 10 + 7 for c in img["neg_category_ids"]]
    path = tmp_path / "gappy.json"
    path.write_text(json.dumps(data))
    _register("gappy_train", path, root)

    with caplog.at_level(logging.INFO):
        stats = get_class_stats("gappy_train")
    assert "counting them from" in caplog.text
    # Counting must reproduce what the generator wrote; frequency uses LVIS's own thresholds
    # (the generator's common/frequent boundary is scaled down for this tiny set).
    assert stats.image_count.tolist() == [c["image_count"] for c in original]
    assert stats.instance_count.tolist() == [c["instance_count"] for c in original]
    lvis_groups = ["r" if c["image_count"] <= 10 else "c" if c["image_count"] <= 100 else "f" for c in original]
    assert stats.frequency.tolist() == lvis_groups

    dicts = DatasetCatalog.get("gappy_train")
    meta = MetadataCatalog.get("gappy_train")
    assert meta.thing_dataset_id_to_contiguous_id[17] == 0
    assert meta.thing_dataset_id_to_contiguous_id[original[-1]["id"] * 10 + 7] == len(original) - 1
    labels = {a["category_id"] for d in dicts for a in d["annotations"]}
    assert labels <= set(range(len(original)))


def test_all_images_count_the_unannotated_ones_too(tiny_dataset_root, tmp_path):
    # Two images without annotations added to the json: M ("annotated") stays, "all" grows by 2,
    # and the frequencies over all images are image_count / (M_all).
    root = tiny_dataset_root / "synthetic_lt"
    data = _load(root / "synthetic_lt_train.json")
    annotated = len({a["image_id"] for a in data["annotations"]})
    top = max(img["id"] for img in data["images"])
    for k in (1, 2):
        empty = dict(data["images"][0], id=top + k, neg_category_ids=[], not_exhaustive_category_ids=[])
        data["images"].append(empty)
    path = tmp_path / "with_empty_images.json"
    path.write_text(json.dumps(data))
    _register("with_empty_images", path, root)
    stats = get_class_stats("with_empty_images")
    assert stats.num_images == annotated and stats.num_all_images == len(data["images"])
    np.testing.assert_allclose(stats.image_frequency_over("all"), stats.image_count / len(data["images"]))
    np.testing.assert_allclose(stats.image_frequency_over("annotated"), stats.image_count / annotated)
    both = get_class_stats(["with_empty_images", "with_empty_images"])
    assert both.num_all_images == 2 * len(data["images"])


def test_class_statistics_by_hand():
    data = {
        "categories": [{"id": 5, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": [
            {"image_id": 1, "category_id": 5}, {"image_id": 1, "category_id": 5},
            {"image_id": 2, "category_id": 5}, {"image_id": 2, "category_id": 2},
        ],
    }
    records, m = class_statistics(data)
    assert m == 2
    assert [(r["id"], r["image_count"], r["instance_count"], r["frequency"]) for r in records] == [
        (2, 1, 1, "r"), (5, 2, 3, "r")]


def test_multiple_datasets_add_up(tiny_dataset_root, tmp_path):
    root = tiny_dataset_root / "synthetic_lt"
    _register("copy_a", root / "synthetic_lt_train.json", root)
    _register("copy_b", root / "synthetic_lt_train.json", root)
    one = get_class_stats("copy_a")
    both = get_class_stats(["copy_a", "copy_b"])
    assert np.array_equal(both.image_count, 2 * one.image_count)
    assert both.num_images == 2 * one.num_images


def test_missing_json_names_the_file(tiny_dataset_root, tmp_path):
    missing = tmp_path / "nope.json"
    _register("missing_json", missing, tiny_dataset_root)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        DatasetCatalog.get("missing_json")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        get_class_stats("missing_json")


def test_missing_image_root_names_the_folder(tiny_dataset_root, tmp_path):
    _register("missing_root", tiny_dataset_root / "synthetic_lt" / "synthetic_lt_val.json", tmp_path / "no_images")
    with pytest.raises(FileNotFoundError, match="no_images"):
        DatasetCatalog.get("missing_root")


def test_unregistered_dataset_is_named():
    with pytest.raises(KeyError, match="not_a_dataset"):
        get_class_stats("not_a_dataset")


def test_dataset_without_statistics_says_what_is_missing():
    name = "stats_free_dataset"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: [])
    with pytest.raises(KeyError, match="class_statistics"):
        get_class_stats(name)


def test_builtin_lvis_names_keep_working():
    """detectron2's LVIS names stay registered, with their classes, and load through lt_det's
    loader (which names the missing json: LVIS itself is not on this machine)."""
    assert "lvis_v1_train" in DatasetCatalog.list() and "lvis_v0.5_val" in DatasetCatalog.list()
    assert len(MetadataCatalog.get("lvis_v1_train").thing_classes) == 1203
    assert len(MetadataCatalog.get("lvis_v0.5_val").thing_classes) == 1230
    with pytest.raises(FileNotFoundError, match="LVIS-format annotation json not found: .*lvis_v1_train.json"):
        DatasetCatalog.get("lvis_v1_train")


def test_datasets_registered_by_detectron2_load_through_lt_det(tiny_dataset_root):
    """Any dataset registered with detectron2's ``register_lvis_instances`` (not only the built-in
    names) loads through lt_det's loader once lt_det's set-up has run: it records the statistics."""
    from detectron2.data.datasets import register_lvis_instances

    from lt_det.data import reregister_builtin_lvis

    name, root = "registered_by_detectron2", tiny_dataset_root / "synthetic_lt"
    register_lvis_instances(name, {}, str(root / "synthetic_lt_train.json"), str(root))
    try:
        reregister_builtin_lvis()
        dicts = DatasetCatalog.get(name)
        assert len(dicts) == len(json.loads((root / "synthetic_lt_train.json").read_text())["images"])
        assert len(MetadataCatalog.get(name).class_statistics) == TINY_NUM_CLASSES
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_detectron2_main_style_class_image_count_does_not_shadow_the_statistics(tiny_dataset_root):
    """detectron2 main's built-in LVIS v1 metadata sets ``class_image_count`` ({id, image_count}
    only); lt_det's statistics live under their own key, read from the json."""
    root = tiny_dataset_root / "synthetic_lt"
    _register("main_style", root / "synthetic_lt_train.json", root)
    data = _load(root / "synthetic_lt_train.json")
    cats = sorted(data["categories"], key=lambda c: c["id"])
    MetadataCatalog.get("main_style").set(class_image_count=[{"id": c["id"], "image_count": c["image_count"]} for c in cats])
    stats = get_class_stats("main_style")
    assert stats.instance_count.tolist() == [c["instance_count"] for c in cats]
    assert stats.frequency.tolist() == [c["frequency"] for c in cats]


def test_statistics_and_dicts_share_one_parse_within_the_context(tiny_dataset_root, json_parses):
    """The loss's statistics and the loader's dicts of one dataset: one parse of its json (through
    a symlink too: the real path is the key); the parsed copy is not kept past the context."""
    root = tiny_dataset_root / "synthetic_lt"
    link = tiny_dataset_root / "train_link.json"
    link.symlink_to(root / "synthetic_lt_train.json")
    _register("parse_once_a", root / "synthetic_lt_train.json", root)
    _register("parse_once_b", link, root)
    with parse_each_json_once():
        stats = get_class_stats("parse_once_a")
        dicts = DatasetCatalog.get("parse_once_a")
        DatasetCatalog.get("parse_once_b")
    assert json_parses == [os.path.realpath(root / "synthetic_lt_train.json")]
    assert stats.num_images == len({d["image_id"] for d in dicts if d["annotations"]})
    DatasetCatalog.get("parse_once_a")
    assert len(json_parses) == 2


def test_a_json_changed_within_the_context_is_parsed_again(tiny_dataset_root, tmp_path, json_parses):
    root = tiny_dataset_root / "synthetic_lt"
    path = tmp_path / "train.json"
    shutil.copy(root / "synthetic_lt_train.json", path)
    _register("parse_once_changed", path, root)
    with parse_each_json_once():
        DatasetCatalog.get("parse_once_changed")
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        DatasetCatalog.get("parse_once_changed")
    assert json_parses == [os.path.realpath(path)] * 2

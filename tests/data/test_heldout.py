"""Held-out splits carved from a training json (lt_det.data.heldout, tools/split_heldout.py), on a
hand-made LVIS-format json whose result the rule fixes whatever the image order (see below)."""
import copy
import importlib.util
import json
import os

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from lt_det.data import get_class_stats
from lt_det.data.heldout import choose_heldout_images, register_heldout_split, split_heldout
from tiny_dataset import REPO


def test_choose_heldout_images_by_hand():
    # A in images 1-5, B in 1 and 2, C only in 3; image 6 has no annotations. Visiting 1..6 with
    # at least 1 training image per category: 1 (A 5 -> 4, B 2 -> 1) is taken; 2 would leave B
    # none; 3 would leave C none; 4, 5 (A 4 -> 3 -> 2) and 6 are taken.
    cats = {1: {"A", "B"}, 2: {"B", "A"}, 3: {"A", "C"}, 4: {"A"}, 5: {"A"}, 6: set()}
    assert choose_heldout_images(cats, [1, 2, 3, 4, 5, 6], 4) == [1, 4, 5, 6]
    assert choose_heldout_images(cats, [1, 2, 3, 4, 5, 6], 2) == [1, 4]
    assert choose_heldout_images(cats, [6, 5, 4, 3, 2, 1], 4) == [6, 5, 4, 2]
    # At least 3 training images: A can lose 2 of its 5, B and C none; image 6 is free.
    assert choose_heldout_images(cats, [1, 2, 3, 4, 5, 6], 3, min_train_images=3) == [4, 5, 6]
    with pytest.raises(ValueError, match="Only 4 of the 6 images can be held out"):
        choose_heldout_images(cats, [1, 2, 3, 4, 5, 6], 5)
    with pytest.raises(ValueError, match="num_images must be >= 1"):
        choose_heldout_images(cats, [1, 2, 3, 4, 5, 6], 0)


def _ann(ann_id, image_id, category_id):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": [10.0, 10.0, 20.0, 20.0],
            "area": 400.0, "segmentation": [[10.0, 10.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0]]}


def hand_made_lvis() -> dict:
    """The case above as a json: category 1 (A) in images 1-5, twice in image 1; category 2 (B) in
    images 1 and 2; category 3 (C) in image 3; image 6 without annotations. The categories carry
    official-looking statistics and groups (f, c, r) that the counts would not give."""
    images = [{"id": i, "width": 100, "height": 80, "coco_url": f"http://images/train2017/{i:012d}.jpg",
               "neg_category_ids": [3] if i == 4 else [], "not_exhaustive_category_ids": [2] if i == 5 else []}
              for i in range(1, 7)]
    placed = [(1, 1), (1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 3), (4, 1), (5, 1)]
    categories = [{"id": 1, "name": "a", "image_count": 500, "instance_count": 900, "frequency": "f"},
                  {"id": 2, "name": "b", "image_count": 50, "instance_count": 60, "frequency": "c"},
                  {"id": 3, "name": "c", "image_count": 5, "instance_count": 5, "frequency": "r"}]
    return {"info": {"year": 2020}, "licenses": [], "images": images, "categories": categories,
            "annotations": [_ann(k + 1, i, c) for k, (i, c) in enumerate(placed)]}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_split_heldout_whatever_the_order(seed):
    source = hand_made_lvis()
    before = copy.deepcopy(source)
    train, heldout = split_heldout(source, 4, seed=seed, source="toy_train.json")
    assert source == before
    held = {img["id"] for img in heldout["images"]}
    # Whatever the order: 4, 5, 6 are taken, and whichever of 1 and 2 comes first.
    assert held - {1, 2} == {4, 5, 6} and len(held & {1, 2}) == 1
    assert {img["id"] for img in train["images"]} == {1, 2, 3, 4, 5, 6} - held
    assert sorted(a["id"] for a in train["annotations"] + heldout["annotations"]) == list(range(1, 10))
    assert all(a["image_id"] in held for a in heldout["annotations"])
    # Remaining training images {2, 3} or {1, 3}: A in 2 images (3 instances with image 1), B and C in 1.
    a_instances = 3 if 1 not in held else 2
    counts = [(c["image_count"], c["instance_count"], c["frequency"]) for c in train["categories"]]
    assert counts == [(2, a_instances, "f"), (1, 1, "c"), (1, 1, "r")]
    assert heldout["categories"] == train["categories"]
    assert next(img for img in heldout["images"] if img["id"] == 4)["neg_category_ids"] == [3]
    assert heldout["info"]["heldout_split"] == {"source": "toy_train.json", "num_heldout_images": 4, "seed": seed,
                                                "min_train_images": 1}
    assert heldout["info"]["year"] == 2020 and heldout["licenses"] == []
    assert split_heldout(source, 4, seed=seed)[1]["images"] == heldout["images"]


def test_split_heldout_bad_input():
    data = hand_made_lvis()
    data["annotations"].append(_ann(99, 42, 1))
    with pytest.raises(ValueError, match="annotation 99 names image 42"):
        split_heldout(data, 2)
    data = hand_made_lvis()
    data["images"].append(dict(data["images"][0]))
    with pytest.raises(ValueError, match="duplicate image ids"):
        split_heldout(data, 2)


def test_split_heldout_tool_and_registration(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("tool_split_heldout", os.path.join(REPO, "tools", "split_heldout.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    src = tmp_path / "toy_train.json"
    src.write_text(json.dumps(hand_made_lvis()))
    tool.main(["--json", str(src), "--num-images", "4", "--seed", "0"])
    out = capsys.readouterr().out
    assert "heldout: 4 images" in out and "train_minus_heldout: 2 images, " in out
    lines = {line.split(":")[0]: line for line in out.splitlines()}
    assert lines["train_minus_heldout"].endswith("categories with annotations: r=1/1, c=1/1, f=1/1")
    assert lines["heldout"].endswith("categories with annotations: r=0/1, c=1/1, f=1/1")  # C stays in training
    (tmp_path / "coco").mkdir()
    register_heldout_split(str(tmp_path), str(tmp_path / "coco"), "toy")
    assert MetadataCatalog.get("toy_heldout").evaluator_type == "lvis"
    dicts = DatasetCatalog.get("toy_heldout")
    assert len(dicts) == 4
    assert all(d["file_name"] == str(tmp_path / "coco" / "train2017" / f"{d['image_id']:012d}.jpg") for d in dicts)
    stats = get_class_stats("toy_train_minus_heldout")
    assert stats.image_count.tolist() == [2, 1, 1] and stats.frequency.tolist() == ["f", "c", "r"]
    with pytest.raises(ValueError, match="Only 4 of the 6 images"):
        tool.main(["--json", str(src), "--num-images", "5"])
    with pytest.raises(FileNotFoundError, match="missing.json"):
        tool.main(["--json", str(tmp_path / "missing.json"), "--num-images", "1"])


def test_lvis_heldout_names_are_registered():
    assert {"lvis_v1_train_minus_heldout", "lvis_v1_heldout", "lvis_v0.5_train_minus_heldout",
            "lvis_v0.5_heldout"} <= set(DatasetCatalog.list())

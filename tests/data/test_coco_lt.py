"""COCO-LT (lt_det.data.coco_lt), its LVIS-format conversion and registration, and the tools
build_coco_lt.py / class_stats.py, on small COCO-format jsons made here.

Expected values follow from the rule in build_coco_lt's docstring, worked out by hand below; the
jsons are built so that the result does not depend on the image order (see each test).
"""
import copy
import importlib.util
import json
import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from lt_det.data import get_class_stats, register_lvis_format
from lt_det.data.coco_lt import aligned_lvis_ranks, build_coco_lt, image_order, register_coco_lt, to_lvis_format
from lt_det.evaluation.backends import BACKENDS
from lt_det.evaluation.metrics import summarize
from tiny_dataset import REPO

# --- a 6-category COCO-format json with one instance per category per image -----------------
# Category ids with gaps; instances per category (COCO rank order: 4, 1, 10, 8, 3, 7).
CATEGORY_INSTANCES = {4: 30, 1: 20, 10: 12, 8: 8, 3: 5, 7: 3}
NUM_IMAGES = 40
# Hand-made "LVIS" statistics, 12 categories, in no particular order. Sorted, largest first:
# [100, 50, 25, 18, 9, 7, 6, 5, 4, 2, 2, 1].
LVIS_STATS = [{"id": i + 1, "name": f"lvis_{i + 1}", "instance_count": n}
              for i, n in enumerate([5, 100, 2, 25, 1, 18, 9, 50, 7, 6, 4, 2])]
# COCO rank i -> LVIS rank round(i * 11 / 5) = round(2.2 i): 0, 2, 4, 7, 9, 11, whose counts are
# 100, 25, 9, 5, 2, 1; each capped at the category's own count:
EXPECTED_TARGETS = {4: 30, 1: 20, 10: 9, 8: 5, 3: 2, 7: 1}


def _ann(ann_id, image_id, cat_id, rng, iscrowd=0):
    x, y = (float(v) for v in rng.uniform(0, 50, 2))
    w, h = (float(v) for v in rng.uniform(5, 30, 2))
    segmentation = ({"counts": [0, 10], "size": [80, 100]} if iscrowd
                    else [[x, y, x + w, y, x + w, y + h, x, y + h]])
    return {"id": ann_id, "image_id": image_id, "category_id": cat_id, "bbox": [x, y, w, h],
            "area": w * h, "iscrowd": iscrowd, "segmentation": segmentation}


def _coco(images, cat_ids, placed, rng):
    """A COCO dict; ``placed``: [(image id, category id, iscrowd)] in annotation order."""
    return {
        "info": {"description": "test"}, "licenses": [],
        "categories": [{"id": c, "name": f"cat{c}", "supercategory": "thing"} for c in sorted(cat_ids)],
        "images": [{"id": i, "width": 100, "height": 80, "file_name": f"{i:012d}.jpg",
                    "coco_url": f"http://images.cocodataset.org/train2017/{i:012d}.jpg"} for i in images],
        "annotations": [_ann(k + 1, i, c, rng, crowd) for k, (i, c, crowd) in enumerate(placed)],
    }


def make_single_instance_coco():
    """Each category c in CATEGORY_INSTANCES[c] distinct images, one instance per image; plus COCO
    crowd annotations of category 4 (in two annotated images and one image with nothing else) and
    one image without annotations. One instance per (image, category) means a taken image adds at
    most one to a category below target: the kept counts are exactly the targets, in any order."""
    rng = np.random.default_rng(0)
    images = [1000 + 7 * k for k in range(NUM_IMAGES)]
    placed = []
    for cat, n in CATEGORY_INSTANCES.items():
        placed += [(images[k], cat, 0) for k in rng.choice(NUM_IMAGES, size=n, replace=False)]
    crowd_only, empty = 5000, 5001
    placed += [(images[0], 4, 1), (images[1], 4, 1), (crowd_only, 4, 1)]
    return _coco(images + [crowd_only, empty], CATEGORY_INSTANCES, placed, rng)


def _counts(coco_lt, crowd):
    counts = {c["id"]: 0 for c in coco_lt["categories"]}
    for a in coco_lt["annotations"]:
        if a["iscrowd"] == crowd:
            counts[a["category_id"]] += 1
    return counts


def test_alignment_rounds_to_the_nearest_rank():
    # round(i * 11 / 5) for i = 0..5 (0, 2.2, 4.4, 6.6, 8.8, 11); COCO / LVIS v0.5: round(i * 1229 / 79).
    assert aligned_lvis_ranks(6, 12) == [0, 2, 4, 7, 9, 11]
    ranks = aligned_lvis_ranks(80, 1230)
    assert ranks[:3] == [0, 16, 31] and ranks[-1] == 1229  # 15.56 -> 16, 31.11 -> 31


def test_kept_instances_equal_the_rules_targets():
    coco = make_single_instance_coco()
    coco_lt = build_coco_lt(coco, LVIS_STATS, num_categories=6)
    assert _counts(coco_lt, crowd=0) == EXPECTED_TARGETS
    assert {c["id"]: c["target"] for c in coco_lt["info"]["coco_lt"]["categories"]} == EXPECTED_TARGETS
    assert [c["id"] for c in coco_lt["categories"]] == sorted(CATEGORY_INSTANCES)
    # Categories 4 and 1 are capped at their own count: every image holding them is taken.
    taken = {img["id"] for img in coco_lt["images"]}
    assert {a["image_id"] for a in coco["annotations"] if a["category_id"] in (4, 1) and not a["iscrowd"]} <= taken
    assert 5000 not in taken and 5001 not in taken  # crowd only; nothing
    # Ignored = the non-crowd instances of taken images that are not kept; they stay, as iscrowd 1,
    # next to COCO's own crowd annotations of those images.
    in_taken = [a for a in coco["annotations"] if a["image_id"] in taken]
    assert len(coco_lt["annotations"]) == len(in_taken)
    original_crowd = sum(a["iscrowd"] for a in in_taken)
    ignored = len(in_taken) - original_crowd - sum(EXPECTED_TARGETS.values())
    assert sum(_counts(coco_lt, crowd=1).values()) == original_crowd + ignored
    assert coco_lt["info"]["coco_lt"]["ignored_instances"] == ignored


def test_every_taken_image_has_a_kept_instance():
    coco_lt = build_coco_lt(make_single_instance_coco(), LVIS_STATS, num_categories=6)
    with_kept = {a["image_id"] for a in coco_lt["annotations"] if not a["iscrowd"]}
    assert with_kept == {img["id"] for img in coco_lt["images"]}


def test_a_taken_image_keeps_all_its_instances_of_a_category_below_target():
    """Category 1: 3 images with 2 instances each, target min(3, 6) = 3: the first image taken
    keeps 2 (< 3), the second 2 more (4: "as many instances as possible"), the third is not
    taken. Category 2: 2 images with 1 instance each, target min(1, 2) = 1. Any order."""
    rng = np.random.default_rng(1)
    placed = [(1, 1, 0), (1, 1, 0), (2, 1, 0), (2, 1, 0), (3, 1, 0), (3, 1, 0), (4, 2, 0), (5, 2, 0)]
    coco = _coco([1, 2, 3, 4, 5], [1, 2], placed, rng)
    stats = [{"instance_count": 1}, {"instance_count": 3}]
    coco_lt = build_coco_lt(coco, stats, num_categories=2)
    assert _counts(coco_lt, crowd=0) == {1: 4, 2: 1}
    assert len(coco_lt["images"]) == 3 and _counts(coco_lt, crowd=1) == {1: 0, 2: 0}


def test_instances_of_a_category_at_target_are_ignored_as_crowd():
    """Category 1 in 3 images, target min(5, 3) = 3: all three are taken. Category 2 in two of
    them, target min(1, 2) = 1: kept in the first taken, ignored (iscrowd 1) in the other."""
    rng = np.random.default_rng(2)
    placed = [(1, 1, 0), (1, 2, 0), (2, 1, 0), (2, 2, 0), (3, 1, 0)]
    coco = _coco([1, 2, 3], [1, 2], placed, rng)
    coco_lt = build_coco_lt(coco, [{"instance_count": 5}, {"instance_count": 1}], num_categories=2)
    assert len(coco_lt["images"]) == 3
    assert _counts(coco_lt, crowd=0) == {1: 3, 2: 1}
    assert _counts(coco_lt, crowd=1) == {1: 0, 2: 1}
    ignored = next(a for a in coco_lt["annotations"] if a["iscrowd"])
    original = next(a for a in coco["annotations"] if a["id"] == ignored["id"])
    assert original["iscrowd"] == 0 and {**original, "iscrowd": 1} == ignored  # nothing else changes


def test_builds_are_deterministic_and_leave_the_input_unchanged():
    coco = make_single_instance_coco()
    before = copy.deepcopy(coco)
    first = build_coco_lt(coco, LVIS_STATS, num_categories=6)
    second = build_coco_lt(copy.deepcopy(coco), LVIS_STATS, num_categories=6)
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert coco == before
    ids = list(range(200))
    assert sorted(image_order(ids, 0)) == ids
    assert image_order(ids, 0) == image_order(ids, 0) != image_order(ids, 1)


def test_bad_input_is_named():
    coco = make_single_instance_coco()
    with pytest.raises(ValueError, match="6 categories.*80"):
        build_coco_lt(coco, LVIS_STATS)
    bad = copy.deepcopy(coco)
    bad["annotations"][3]["category_id"] = 99
    with pytest.raises(ValueError, match="lacks category 99, which annotation 4"):
        build_coco_lt(bad, LVIS_STATS, num_categories=6)
    targets = {f"cat{c}": 1 for c in CATEGORY_INSTANCES if c != 7}
    with pytest.raises(ValueError, match="lacks categories \\['giraffe'\\]"):
        build_coco_lt(coco, LVIS_STATS, num_categories=6, targets={**targets, "cat7": 1, "giraffe": 3})
    with pytest.raises(ValueError, match="No target is given for COCO categories \\['cat7'\\]"):
        build_coco_lt(coco, LVIS_STATS, num_categories=6, targets=targets)
    with pytest.raises(ValueError, match="'lvis_3'.*instance_count"):
        build_coco_lt(coco, [{k: v for k, v in r.items() if r["id"] != 3 or k != "instance_count"}
                             for r in LVIS_STATS], num_categories=6)
    with pytest.raises(ValueError, match="5 categories, fewer than the 6"):
        build_coco_lt(coco, LVIS_STATS[:5], num_categories=6)


def test_named_targets_replace_the_alignment():
    coco = make_single_instance_coco()
    targets = {"cat4": 3, "cat1": 1, "cat10": 2, "cat8": 100, "cat3": 1, "cat7": 0}
    coco_lt = build_coco_lt(coco, LVIS_STATS, num_categories=6, targets=targets)
    assert _counts(coco_lt, crowd=0) == {4: 3, 1: 1, 10: 2, 8: 8, 3: 1, 7: 0}  # 100 capped at 8


def test_targets_of_lvis_v05_fit_the_papers_instance_count():
    """With LVIS v0.5's real counts and 80 COCO categories large enough never to cap, the targets
    sum to at most the paper's 64,504 training instances (the sampler only overshoots) and to
    within 1% of it."""
    with open(os.path.join(REPO, "tests", "data", "lvis_v0.5_train_cat_info.json")) as f:
        lvis = json.load(f)
    from lt_det.data.coco_lt import rank_aligned_targets
    targets = rank_aligned_targets({c: 10 ** 6 - c for c in range(1, 81)}, lvis)
    assert 0.99 * 64504 <= sum(targets.values()) <= 64504


# --- LVIS format, registration, evaluation -------------------------------------------------------

def _reregister(name, json_file, image_root):
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_lvis_format(name, str(json_file), str(image_root))


def _write(data, path):
    path.write_text(json.dumps(data))
    return path


def _ignoring_coco():
    """As in test_instances_of_a_category_at_target_are_ignored_as_crowd, plus a COCO crowd
    annotation of category 1 in image 3."""
    rng = np.random.default_rng(2)
    placed = [(1, 1, 0), (1, 2, 0), (2, 1, 0), (2, 2, 0), (3, 1, 0), (3, 1, 1)]
    return _coco([1, 2, 3], [1, 2], placed, rng)


def test_lvis_format_loads_with_statistics_and_image_labels(tmp_path):
    coco_lt = build_coco_lt(_ignoring_coco(), [{"instance_count": 5}, {"instance_count": 1}], num_categories=2)
    lvis = to_lvis_format(coco_lt, "train2017")
    _reregister("test_coco_lt_train", _write(lvis, tmp_path / "train.json"), tmp_path)
    dicts = DatasetCatalog.get("test_coco_lt_train")
    assert [d["image_id"] for d in dicts] == [1, 2, 3]
    assert all(d["file_name"] == os.path.join(str(tmp_path), "train2017", f"{d['image_id']:012d}.jpg") for d in dicts)
    stats = get_class_stats("test_coco_lt_train")
    # Kept: category 1 in images 1, 2, 3; category 2 once. LVIS's rule: <= 10 images is rare.
    assert stats.instance_count.tolist() == [3, 1] and stats.image_count.tolist() == [3, 1]
    assert stats.frequency.tolist() == ["r", "r"] and stats.num_images == 3
    # Contiguous ids: category 1 -> 0, 2 -> 1. The image where category 2 was ignored has it as
    # not exhaustive; image 3 has category 1's crowd region; absent categories are negatives.
    labels = {d["image_id"]: (sorted(d["neg_category_ids"]), sorted(d["not_exhaustive_category_ids"]),
                              sorted(a["category_id"] for a in d["annotations"])) for d in dicts}
    ignored_image = next(a["image_id"] for a in coco_lt["annotations"] if a["iscrowd"] and a["category_id"] == 2)
    kept_image = ({1, 2} - {ignored_image}).pop()
    assert labels[ignored_image] == ([], [1], [0])
    assert labels[kept_image] == ([], [], [0, 1])
    assert labels[3] == ([1], [0], [0])


def test_val_conversion_carries_the_training_statistics(tmp_path):
    train = to_lvis_format(build_coco_lt(make_single_instance_coco(), LVIS_STATS, num_categories=6), "train2017")
    assert [c["instance_count"] for c in train["categories"]] == [EXPECTED_TARGETS[c] for c in sorted(EXPECTED_TARGETS)]
    # One instance per (image, category): image counts equal instance counts; 30 and 20 are common.
    assert [c["frequency"] for c in train["categories"]] == ["c" if EXPECTED_TARGETS[c] > 10 else "r"
                                                             for c in sorted(EXPECTED_TARGETS)]
    val = _ignoring_coco()  # categories 1 and 2; the training set's are 1, 3, 4, 7, 8, 10
    val["annotations"][0]["segmentation"] = [[1.0, 2.0, 3.0, 4.0]]  # 2 points: left out, not exhaustive
    with pytest.raises(ValueError, match="do not match"):
        to_lvis_format(val, "val2017", train_categories=train["categories"])
    records = [{"id": 1, "image_count": 7, "instance_count": 9, "frequency": "r"},
               {"id": 2, "image_count": 150, "instance_count": 400}]
    lvis_val = to_lvis_format(val, "val2017", train_categories=records)
    assert [(c["image_count"], c["instance_count"], c["frequency"]) for c in lvis_val["categories"]] == \
        [(7, 9, "r"), (150, 400, "f")]
    assert [img["not_exhaustive_category_ids"] for img in lvis_val["images"]] == [[1], [], [1]]
    assert len(lvis_val["annotations"]) == 4  # 6 - 1 crowd - 1 without a valid polygon
    _reregister("test_coco_lt_val", _write(lvis_val, tmp_path / "val.json"), tmp_path)
    assert sum(len(d["annotations"]) for d in DatasetCatalog.get("test_coco_lt_val")) == 4


def test_lvis_evaluation_counts_false_positives_of_absent_categories(tmp_path):
    """Exhaustive negatives: a confident detection of a category absent from an image is a false
    positive (with empty neg_category_ids, lvis-api would skip it and report AP 1)."""
    lvis = to_lvis_format(_ignoring_coco(), "val2017")
    gt = _write(lvis, tmp_path / "gt.json")
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.5}
               for a in lvis["annotations"]]
    precision = BACKENDS["lvis"](str(gt), str(_write(perfect, tmp_path / "dt.json")), "bbox", 300)
    frequency = [c["frequency"] for c in lvis["categories"]]
    assert summarize(precision, frequency)["AP"] == pytest.approx(1.0)
    false_positive = {"image_id": 3, "category_id": 2, "bbox": [0, 0, 10, 10], "score": 0.9}
    precision = BACKENDS["lvis"](str(gt), str(_write(perfect + [false_positive], tmp_path / "dt2.json")), "bbox", 300)
    assert summarize(precision, frequency)["AP"] < 0.99


def test_register_coco_lt(tmp_path):
    assert {"coco_lt_train", "coco_lt_val"} <= set(DatasetCatalog.list())  # by setup_environment
    lvis = to_lvis_format(build_coco_lt(_ignoring_coco(), [{"instance_count": 5}, {"instance_count": 1}],
                                        num_categories=2), "train2017")
    _write(lvis, tmp_path / "t_coco_lt_train.json")
    register_coco_lt(str(tmp_path), str(tmp_path), name="t_coco_lt", splits=("train",))
    assert len(DatasetCatalog.get("t_coco_lt_train")) == 3
    assert MetadataCatalog.get("t_coco_lt_train").evaluator_type == "lvis"
    register_coco_lt(str(tmp_path / "missing"), str(tmp_path), name="t_coco_lt_missing", splits=("train",))
    with pytest.raises(FileNotFoundError, match="t_coco_lt_missing_train.json"):
        DatasetCatalog.get("t_coco_lt_missing_train")


# --- tools ------------------------------------------------------------------------------------

def _tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", os.path.join(REPO, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _hand_made_coco():
    """cat (1): one instance in each of images 1-12, a second in image 1 (12 images, 13
    instances, common); dog (2): images 1 and 13, two in 13 (2 images, 3 instances, rare), and a
    crowd region in image 14 (not counted); emu (5): none. Annotated images: 1-13."""
    rng = np.random.default_rng(3)
    placed = [(i, 1, 0) for i in range(1, 13)] + [(1, 1, 0), (1, 2, 0), (13, 2, 0), (13, 2, 0), (14, 2, 1)]
    coco = _coco(list(range(1, 16)), [1, 2, 5], placed, rng)
    for c, name in zip(coco["categories"], ("cat", "dog", "emu")):
        c["name"] = name
    return coco


HAND_COUNTED = [{"id": 1, "name": "cat", "image_count": 12, "instance_count": 13, "frequency": "c"},
                {"id": 2, "name": "dog", "image_count": 2, "instance_count": 3, "frequency": "r"},
                {"id": 5, "name": "emu", "image_count": 0, "instance_count": 0, "frequency": "r"}]


def test_class_stats_tool_on_a_hand_made_json(tmp_path, capsys):
    tool = _tool("class_stats")
    path = _write(_hand_made_coco(), tmp_path / "coco.json")
    out = tmp_path / "stats.json"
    tool.main([str(path), "--output", str(out)])
    report = json.loads(out.read_text())
    assert report["categories"] == HAND_COUNTED
    assert report["num_annotated_images"] == 13 and report["crowd_annotations"] == 1
    assert report["counted_from"] == "annotations"
    printed = capsys.readouterr().out
    assert "classes per frequency group: r=2, c=1, f=0" in printed
    assert "AP1 [1, 10)=1, AP2 [10, 100)=1, AP3 [100, 1000)=0, AP4 [1000, inf)=0, no instances=1" in printed

    # An LVIS json's own category counts are reported unless --from-annotations.
    lvis = _hand_made_coco()
    for c in lvis["categories"]:
        c.update(image_count=500, instance_count=2000, frequency="f")
    path = _write(lvis, tmp_path / "lvis.json")
    tool.main([str(path), "--output", str(out)])
    report = json.loads(out.read_text())
    assert report["counted_from"] == "categories"
    assert [(r["image_count"], r["instance_count"], r["frequency"]) for r in report["categories"]] == [(500, 2000, "f")] * 3
    tool.main([str(path), "--output", str(out), "--from-annotations"])
    assert json.loads(out.read_text())["categories"] == HAND_COUNTED


def test_build_coco_lt_tool(tmp_path, capsys):
    coco_train = _write(make_single_instance_coco(), tmp_path / "instances_train.json")
    coco_val = _write(make_single_instance_coco(), tmp_path / "instances_val.json")
    stats = _write({"categories": LVIS_STATS}, tmp_path / "lvis_train.json")
    _tool("build_coco_lt").main(["--coco-train", str(coco_train), "--coco-val", str(coco_val),
                                 "--lvis-stats", str(stats), "--num-categories", "6",
                                 "--output", str(tmp_path / "coco_lt"), "--coco-format"])
    train = json.loads((tmp_path / "coco_lt" / "coco_lt_train.json").read_text())
    val = json.loads((tmp_path / "coco_lt" / "coco_lt_val.json").read_text())
    assert {c["id"]: c["instance_count"] for c in train["categories"]} == EXPECTED_TARGETS
    assert val["categories"] == train["categories"]
    assert (tmp_path / "coco_lt" / "coco_lt_train_coco.json").exists()
    printed = capsys.readouterr().out
    # Targets 30, 20 (AP2) and 9, 5, 2, 1 (AP1).
    assert "AP1 [1, 10)=4, AP2 [10, 100)=2, AP3 [100, 1000)=0, AP4 [1000, inf)=0" in printed
    total = sum(EXPECTED_TARGETS.values())  # one instance per (image, category): no overshoot
    assert f"{total} instances (targets sum to {total};" in printed

"""The generator: deterministic, loadable by lvis-api, statistics equal to its annotations."""
import filecmp
import json
import os
from collections import Counter

import numpy as np
import pytest

from lt_det.data.synthetic import LVIS_RARE_MAX_IMAGES, SyntheticLTConfig, class_image_counts, fingerprint, generate

SMALL = SyntheticLTConfig(num_classes=10, max_images_per_class=30, val_instances_per_class=2, seed=3)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("small")
    return out, generate(str(out), SMALL)


def test_same_seed_gives_identical_files(small_set, tmp_path):
    out, paths = small_set
    again = generate(str(tmp_path), SMALL)
    for split in ("train", "val"):
        assert filecmp.cmp(paths[split], again[split], shallow=False)
        names = sorted(os.listdir(out / split))
        assert names == sorted(os.listdir(tmp_path / split))
        for name in names[:20]:
            assert filecmp.cmp(out / split / name, tmp_path / split / name, shallow=False)


def test_other_seed_differs(small_set, tmp_path):
    _, paths = small_set
    other = generate(str(tmp_path), SyntheticLTConfig(**{**SMALL.__dict__, "seed": 4}))
    assert not filecmp.cmp(paths["train"], other["train"], shallow=False)


def test_loads_in_lvis_api_with_matching_statistics(small_set):
    from lvis import LVIS

    _, paths = small_set
    api = LVIS(paths["train"])
    anns = api.dataset["annotations"]
    images_of = {c: set() for c in api.cats}
    for a in anns:
        images_of[a["category_id"]].add(a["image_id"])
    instances = Counter(a["category_id"] for a in anns)
    for cid, cat in api.cats.items():
        assert cat["image_count"] == len(images_of[cid])
        assert cat["instance_count"] == instances[cid]
        n = cat["image_count"]
        expected = "r" if n <= LVIS_RARE_MAX_IMAGES else ("c" if n <= SMALL.common_max_images else "f")
        assert cat["frequency"] == expected
    # Every image lists exactly its absent classes as negatives; annotation is exhaustive.
    all_ids = set(api.cats)
    for img in api.dataset["images"]:
        present = {a["category_id"] for a in api.img_ann_map[img["id"]]}
        assert set(img["neg_category_ids"]) == all_ids - present
        assert img["not_exhaustive_category_ids"] == []
        assert os.path.exists(os.path.join(os.path.dirname(paths["train"]), img["file_name"]))


def test_val_split_is_class_balanced(small_set):
    _, paths = small_set
    with open(paths["val"]) as f:
        val = json.load(f)
    counts = Counter(a["category_id"] for a in val["annotations"])
    assert set(counts.values()) == {SMALL.val_instances_per_class}
    with open(paths["train"]) as f:
        assert val["categories"] == json.load(f)["categories"]  # train statistics, as LVIS does


def test_image_count_profile_is_long_tailed():
    counts = class_image_counts(SyntheticLTConfig())
    assert counts == sorted(counts, reverse=True)
    assert counts[0] == 400 and counts[-1] == 1
    groups = Counter("r" if n <= 10 else ("c" if n <= 100 else "f") for n in counts)
    assert groups == {"r": 14, "c": 13, "f": 13}  # 35% / 32.5% / the rest of 40


def test_masks_match_boxes(small_set):
    _, paths = small_set
    with open(paths["train"]) as f:
        anns = json.load(f)["annotations"]
    for a in anns[:50]:
        poly = np.array(a["segmentation"][0]).reshape(-1, 2)
        x0, y0 = poly.min(0)
        x1, y1 = poly.max(0)
        assert np.allclose(a["bbox"], [x0, y0, x1 - x0, y1 - y0], atol=0.02)


def test_too_many_classes_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="num_classes"):
        generate(str(tmp_path), SyntheticLTConfig(num_classes=49))


def test_heldout_split_leaves_train_and_val_unchanged(small_set, tmp_path):
    _, paths = small_set
    with_heldout = generate(str(tmp_path), SyntheticLTConfig(**{**SMALL.__dict__, "heldout_instances_per_class": 3}))
    for split in ("train", "val"):
        a, b = (json.load(open(p[split])) for p in (paths, with_heldout))
        assert a["images"] == b["images"] and a["annotations"] == b["annotations"]
    heldout = json.load(open(with_heldout["heldout"]))
    assert Counter(a["category_id"] for a in heldout["annotations"]) == {c: 3 for c in range(1, SMALL.num_classes + 1)}
    train_ids = {a["id"] for a in json.load(open(paths["train"]))["annotations"]}
    assert not train_ids & {a["id"] for a in heldout["annotations"]}


def test_pretrain_palette_shares_no_shape_or_colour_and_uniform_profile(tmp_path):
    from lt_det.data.synthetic import COLOURS, SHAPES

    cfg = SyntheticLTConfig(num_classes=48, max_images_per_class=3, val_instances_per_class=0, palette="pretrain",
                            profile="uniform")
    data = json.load(open(generate(str(tmp_path), cfg, name="pretrain")["train"]))
    names = [c["name"] for c in data["categories"]]
    assert len(set(names)) == 48
    for name in names:
        colour, shape = name.split("_", 1)
        assert colour not in COLOURS and shape not in SHAPES
    assert class_image_counts(cfg) == [3] * 48  # uniform: max_images_per_class each
    # an object that finds no free slot in 50 tries is left out, so a class may fall short
    assert max(c["image_count"] for c in data["categories"]) == 3
    with pytest.raises(ValueError, match="palette must be one of"):
        generate(str(tmp_path), SyntheticLTConfig(palette="imagenet"))


def test_fingerprint_is_the_data_and_nothing_else(small_set, tmp_path):
    """Same data -> same fingerprint (another folder, files re-encoded); one pixel or one json value
    changed -> another; a missing image -> an error naming it."""
    import shutil

    import cv2

    out, _ = small_set
    reference = fingerprint(str(out), SMALL)
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    image = sorted((copy / "train").iterdir())[0]
    pixels = cv2.imread(str(image), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(image), pixels, [cv2.IMWRITE_PNG_COMPRESSION, 0])  # other bytes, same pixels
    assert not filecmp.cmp(out / "train" / image.name, image, shallow=False)
    assert fingerprint(str(copy), SMALL) == reference
    pixels[0, 0, 0] ^= 1
    cv2.imwrite(str(image), pixels)
    assert fingerprint(str(copy), SMALL) != reference

    shutil.rmtree(copy)
    shutil.copytree(out, copy)
    val = json.loads((copy / "synthetic_lt_val.json").read_text())
    val["annotations"][0]["bbox"][0] += 1
    (copy / "synthetic_lt_val.json").write_text(json.dumps(val))
    assert fingerprint(str(copy), SMALL) != reference
    image.unlink()
    with pytest.raises(FileNotFoundError, match=f"{image.name}.*synthetic_lt_train.json"):
        fingerprint(str(copy), SMALL)


def test_default_set_is_the_one_the_readme_numbers_were_measured_on(tmp_path):
    """The committed fingerprint (datasets/synthetic_lt.sha256, which `make data` checks) is that of
    the default set generated with the pinned packages."""
    from tiny_dataset import REPO

    generate(str(tmp_path), SyntheticLTConfig())
    with open(os.path.join(REPO, "datasets", "synthetic_lt.sha256")) as f:
        expected = f.read().split()[0]
    assert fingerprint(str(tmp_path), SyntheticLTConfig()) == expected

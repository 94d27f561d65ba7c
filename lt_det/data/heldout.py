"""A held-out split carved from a training json, for choosing test-time hyper-parameters.

Post-hoc calibrations (τ, γ, λ of ``TEST.CALIBRATION``) are chosen on data that is neither
evaluated on nor trained on (tools/calibration_sweep.py and tools/tau_norm.py refuse a split of
``DATASETS.TEST``). LVIS has no such split: its val is the evaluation split. This module takes
images out of an LVIS-format training json into a held-out json, and writes the training json
that remains; a stage-1 model trained on the remainder has never seen the held-out images.

The rule (deterministic for a seed): the images are visited in a random order; an image is held
out when, after removing it, every category it has annotations of keeps at least
``min_train_images`` training images; the walk stops at ``num_images``. So no category disappears
from training (with the default 1), and the rarest categories are the least likely to appear in
the held-out split: it measures the frequent and common groups better than the rare one.

Both jsons carry the remaining training set's statistics in ``categories``: ``image_count`` and
``instance_count`` counted from the remaining annotations, ``frequency`` the source's own (LVIS's
official r / c / f groups, kept so that APr / APc / APf mean what they mean on LVIS). Images keep
their image-level labels (``neg_category_ids``, ``not_exhaustive_category_ids``).
"""
import copy
import os
from collections import defaultdict
from typing import Dict, List, Sequence, Set, Tuple

import numpy as np
from detectron2.data import DatasetCatalog

from .datasets import class_statistics, register_lvis_format

__all__ = ["choose_heldout_images", "split_heldout", "register_heldout_split", "HELDOUT_SPLITS"]

# The two jsons a split writes, NAME_{split}.json, and the dataset names they register as.
HELDOUT_SPLITS = ("train_minus_heldout", "heldout")


def choose_heldout_images(image_categories: Dict[int, Set[int]], order: Sequence[int], num_images: int,
                          min_train_images: int = 1) -> List[int]:
    """The held-out image ids, in visiting order.

    Args:
        image_categories: {image id: the ids of the categories it has annotations of} for every
            training image (an image without annotations maps to an empty set).
        order: every image id, in the order they are considered.
        num_images: how many to hold out.
        min_train_images: the fewest training images a category may be left with.
    Raises:
        ValueError: fewer than ``num_images`` images can be held out under the rule.
    """
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    remaining: Dict[int, int] = defaultdict(int)
    for cats in image_categories.values():
        for c in cats:
            remaining[c] += 1
    chosen = []
    for image_id in order:
        cats = image_categories[image_id]
        if all(remaining[c] - 1 >= min_train_images for c in cats):
            for c in cats:
                remaining[c] -= 1
            chosen.append(image_id)
            if len(chosen) == num_images:
                return chosen
    raise ValueError(f"Only {len(chosen)} of the {len(image_categories)} images can be held out with every "
                     f"category keeping at least {min_train_images} training image(s); asked for {num_images}")


def split_heldout(lvis_json: dict, num_images: int, seed: int = 0, min_train_images: int = 1,
                  source: str = "") -> Tuple[dict, dict]:
    """(the remaining training json, the held-out json) of an LVIS-format training json.

    The input is not modified. ``source`` (its path) is recorded in both jsons' ``info``.
    """
    image_ids = sorted(img["id"] for img in lvis_json["images"])
    if len(image_ids) != len(set(image_ids)):
        raise ValueError(f"{source or 'json'}: duplicate image ids")
    image_categories: Dict[int, Set[int]] = {i: set() for i in image_ids}
    for a in lvis_json["annotations"]:
        if a["image_id"] not in image_categories:
            raise ValueError(f"{source or 'json'}: annotation {a.get('id')} names image {a['image_id']}, "
                             "which is not in 'images'")
        image_categories[a["image_id"]].add(a["category_id"])
    order = [image_ids[i] for i in np.random.default_rng(seed).permutation(len(image_ids))]
    heldout = set(choose_heldout_images(image_categories, order, num_images, min_train_images))

    source_records, _ = class_statistics(lvis_json, source)
    train_annotations = [a for a in lvis_json["annotations"] if a["image_id"] not in heldout]
    counted, _ = class_statistics({"categories": [{"id": r["id"], "name": r["name"]} for r in source_records]},
                                  source, annotations=train_annotations)
    categories = [{**c, "image_count": n["image_count"], "instance_count": n["instance_count"],
                   "frequency": r["frequency"]}
                  for c, r, n in zip(sorted(lvis_json["categories"], key=lambda c: c["id"]), source_records, counted)]
    info = {**lvis_json.get("info", {}), "heldout_split": {
        "source": source, "num_heldout_images": len(heldout), "seed": seed, "min_train_images": min_train_images}}

    def part(keep) -> dict:
        out = {k: v for k, v in lvis_json.items() if k not in ("images", "annotations", "categories", "info")}
        out["info"] = copy.deepcopy(info)
        out["images"] = [img for img in lvis_json["images"] if keep(img["id"])]
        out["annotations"] = [a for a in lvis_json["annotations"] if keep(a["image_id"])]
        out["categories"] = copy.deepcopy(categories)
        return out

    return part(lambda i: i not in heldout), part(lambda i: i in heldout)


def register_heldout_split(json_dir: str, image_root: str, name: str) -> None:
    """Registers ``{name}_train_minus_heldout`` and ``{name}_heldout`` from
    ``json_dir/{name}_{split}.json`` (written by tools/split_heldout.py), images under
    ``image_root``, if not registered yet. As for COCO-LT, the names exist before the files: a run
    that uses them before they are written fails on load with the missing json's path."""
    for split in HELDOUT_SPLITS:
        dataset = f"{name}_{split}"
        if dataset not in DatasetCatalog.list():
            register_lvis_format(dataset, os.path.join(json_dir, f"{name}_{split}.json"), image_root)

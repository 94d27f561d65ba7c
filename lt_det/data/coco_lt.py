"""COCO-LT: a long-tailed subset of COCO train2017 with LVIS v0.5's class-size profile, and its
conversion to LVIS format for lt_det's loader and evaluator.

Shorthand: K = COCO categories (80), N = LVIS categories the statistics list (LVIS v0.5: 1230).
"""
# -----------------------------------------------------------------------------------------------
# Source: Li et al., "Overcoming Classifier Imbalance for Long-tail Object Detection with Balanced
# Group Softmax" (BAGS), CVPR 2020, supplementary section 4.1. The paper sorts the categories of
# LVIS and COCO by training instances, aligns COCO's 80 with LVIS's 1230, sets each COCO
# category's target to the instance count of its LVIS counterpart, samples that many instances
# per category, uses as many instances of a sampled image as possible, and ignores an instance
# only when its category already has plenty. Their result: 9,100 training images, 80 categories,
# 64,504 training instances; validation is COCO val2017 (5,000 images).
#
# Released code: the BAGS repository (github.com/FishYuLi/BalancedGroupSoftmax, every commit
# read) has no COCO-LT construction script and no COCO-LT json. Its only COCO-LT trace is in
# mmdet/core/evaluation/coco_utils.py (commit 02ad2b7): COCO evaluation repeated over four
# hard-coded lists of COCO category ids, 4 / 24 / 32 / 20 classes, labelled "(0,20)",
# "[20,400)", "[400,8000)", "[8000,~)". They are exactly the classes whose instance counts fall
# in those ranges in class_to_imageid_and_inscount_coco_sampled.pt of the SimCal repository
# (github.com/twangnh/SimCal, an overlapping group of authors; its README links a sampled json,
# train_coco2017_LT_sampled.json, on Google Drive, and no script that makes it). That file
# describes a different set from the paper's: 99,411 images and 666,493 instances, its 20
# largest classes at what look like their full train2017 counts (person: 262,465). So the
# released code gives no rule to follow; the rule here is this module's own reading of the
# paper's text, stated in build_coco_lt's docstring; no code was taken from either repository.
# (lt_det's AP1-AP4 use the paper's bins, [1, 10) / [10, 100) / [100, 1000) / [1000, inf).)
# -----------------------------------------------------------------------------------------------
import hashlib
import logging
import os
from collections import defaultdict
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from detectron2.data import DatasetCatalog

from .annotation_checks import check_lvis_json
from .datasets import class_statistics, frequency_group, register_lvis_format

__all__ = [
    "COCO_NUM_CATEGORIES",
    "coco_instance_counts",
    "aligned_lvis_ranks",
    "rank_aligned_targets",
    "named_targets",
    "image_order",
    "build_coco_lt",
    "to_lvis_format",
    "register_coco_lt",
]

logger = logging.getLogger(__name__)

COCO_NUM_CATEGORIES = 80


def _is_crowd(annotation: dict) -> bool:
    return bool(annotation.get("iscrowd", 0))


def _coco_categories(coco: dict, num_categories: Optional[int]) -> List[dict]:
    """The json's categories sorted by id, after checking their number against the alignment's."""
    cats = sorted(coco.get("categories", []), key=lambda c: c["id"])
    if num_categories is not None and len(cats) != num_categories:
        raise ValueError(
            f"The COCO json has {len(cats)} categories; the COCO-LT alignment expects {num_categories} "
            f"(COCO has {COCO_NUM_CATEGORIES}). To align another category list, pass num_categories={len(cats)} "
            "(tools/build_coco_lt.py: --num-categories)."
        )
    if len({c["id"] for c in cats}) != len(cats):
        raise ValueError("The COCO json's categories have duplicate ids")
    return cats


def _annotations_by_image(coco: dict, cat_ids: Set[int]) -> Dict[int, List[dict]]:
    """{image id: its annotations, in json order}, after checking their image and category ids."""
    image_ids = {img["id"] for img in coco["images"]}
    by_image: Dict[int, List[dict]] = defaultdict(list)
    for a in coco.get("annotations", []):
        if a["category_id"] not in cat_ids:
            raise ValueError(
                f"The COCO json lacks category {a['category_id']}, which annotation {a.get('id')} names "
                f"(its categories: {sorted(cat_ids)[:10]}{' ...' if len(cat_ids) > 10 else ''})"
            )
        if a["image_id"] not in image_ids:
            raise ValueError(f"Annotation {a.get('id')} names image {a['image_id']}, which is not in the COCO json")
        by_image[a["image_id"]].append(a)
    return by_image


def coco_instance_counts(coco: dict) -> Dict[int, int]:
    """{category id: training instances}: the non-crowd annotations of each of the json's categories
    (0 for a category without any); COCO's crowd regions (``iscrowd`` 1) are not instances."""
    counts = {c["id"]: 0 for c in coco["categories"]}
    for a in coco.get("annotations", []):
        if not _is_crowd(a) and a["category_id"] in counts:
            counts[a["category_id"]] += 1
    return counts


def aligned_lvis_ranks(num_coco: int, num_lvis: int) -> List[int]:
    """The LVIS rank aligned with each COCO rank i = 0..K-1: ``round(i * (N - 1) / (K - 1))``,
    rounding halves up (exact integer arithmetic). Both ends meet (0 -> 0, K-1 -> N-1) and the
    ranks in between are spread evenly; LVIS v0.5 and COCO: 0, 16, 31, 47, ..., 1229."""
    if num_coco < 2:
        raise ValueError(f"The rank alignment needs at least 2 COCO categories, not {num_coco}")
    if num_lvis < num_coco:
        raise ValueError(f"The LVIS statistics list {num_lvis} categories, fewer than the {num_coco} "
                         "COCO categories they are aligned with")
    span, steps = num_lvis - 1, num_coco - 1
    return [(2 * i * span + steps) // (2 * steps) for i in range(num_coco)]


def _lvis_counts_descending(lvis_stats: Sequence[Mapping]) -> List[int]:
    """The statistics' ``instance_count`` values, largest first; a record without a non-negative
    integer ``instance_count`` is a ``ValueError`` naming it."""
    counts = []
    for k, record in enumerate(lvis_stats):
        count = record.get("instance_count") if isinstance(record, Mapping) else None
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            label = record.get("name", record.get("id", k)) if isinstance(record, Mapping) else k
            raise ValueError(f"LVIS statistics record {label!r} (position {k}) has no non-negative integer "
                             f"'instance_count' (got {count!r})")
        counts.append(count)
    return sorted(counts, reverse=True)


def rank_aligned_targets(coco_counts: Mapping[int, int], lvis_stats: Sequence[Mapping]) -> Dict[int, int]:
    """Each COCO category's target number of training instances under the rank alignment.

    COCO categories are ranked by ``coco_counts`` descending (ties: smaller id first), LVIS's by
    ``instance_count`` descending; COCO rank i gets the count of LVIS rank
    :func:`aligned_lvis_ranks` ``[i]``, capped at the category's own ``coco_counts``.

    Args:
        coco_counts: {COCO category id: training instances} (:func:`coco_instance_counts`).
        lvis_stats: N records with ``instance_count`` (LVIS's categories, or a cat-info list).
    Returns:
        {COCO category id: target}.
    """
    lvis_counts = _lvis_counts_descending(lvis_stats)
    coco_ranked = sorted(coco_counts, key=lambda c: (-coco_counts[c], c))
    ranks = aligned_lvis_ranks(len(coco_ranked), len(lvis_counts))
    return {c: min(lvis_counts[j], coco_counts[c]) for c, j in zip(coco_ranked, ranks)}


def named_targets(categories: Sequence[dict], targets: Mapping[str, int],
                  coco_counts: Mapping[int, int]) -> Dict[int, int]:
    """{category id: target} from targets given by COCO category name (capped at ``coco_counts``).

    Raises:
        ValueError: a name that is not one of the json's categories, or a category without a target
            (each named).
    """
    by_name = {c["name"]: c["id"] for c in categories}
    unknown = sorted(set(targets) - set(by_name))
    if unknown:
        raise ValueError(f"The COCO json lacks categories {unknown}, which the targets name")
    missing = sorted(set(by_name) - set(targets))
    if missing:
        raise ValueError(f"No target is given for COCO categories {missing}")
    return {by_name[name]: min(int(t), coco_counts[by_name[name]]) for name, t in targets.items()}


def image_order(image_ids: Iterable[int], seed: int) -> List[int]:
    """The image ids in the order the sampler visits them: ascending SHA-256 of ``"{seed}:{id}"``
    (ties, which do not occur in practice, by id). A fixed pseudo-random order that depends on
    nothing but the seed and the ids: the same on every platform and numpy version."""
    def key(image_id: int) -> Tuple[bytes, int]:
        return hashlib.sha256(f"{seed}:{image_id}".encode()).digest(), image_id
    return sorted(image_ids, key=key)


def _sample(order: Sequence[int], anns_by_image: Mapping[int, List[dict]],
            targets: Mapping[int, int]) -> Tuple[List[int], Set[int], Dict[int, int]]:
    """The greedy pass of :func:`build_coco_lt` step 3.

    Returns:
        taken: image ids taken, in visiting order.
        ignored: ``id()`` of the non-crowd annotations of taken images marked ignored.
        kept: {category id: non-crowd instances kept}.
    """
    kept = {c: 0 for c in targets}
    taken: List[int] = []
    ignored: Set[int] = set()
    remaining = sum(1 for c in targets if kept[c] < targets[c])
    for image_id in order:
        if remaining == 0:
            break
        instances = [a for a in anns_by_image.get(image_id, ()) if not _is_crowd(a)]
        below = {a["category_id"] for a in instances if kept[a["category_id"]] < targets[a["category_id"]]}
        if not below:
            continue
        taken.append(image_id)
        for a in instances:
            if a["category_id"] in below:
                kept[a["category_id"]] += 1
            else:
                ignored.add(id(a))
        remaining -= sum(1 for c in below if kept[c] >= targets[c])
    return taken, ignored, kept


def build_coco_lt(coco: dict, lvis_stats: Sequence[Mapping], seed: int = 0,
                  num_categories: Optional[int] = COCO_NUM_CATEGORIES,
                  targets: Optional[Mapping[str, int]] = None) -> dict:
    """COCO-LT: the subset of a COCO training json whose per-category instance counts follow
    LVIS's, by this reading of BAGS's rule (the module's comment block gives the source):

    1. Training instances are the non-crowd annotations. COCO categories are ranked by them,
       descending (ties: smaller id first); the N LVIS categories by ``instance_count``,
       descending.
    2. COCO rank i (0..K-1) is aligned with LVIS rank ``round(i * (N - 1) / (K - 1))`` (halves up;
       :func:`aligned_lvis_ranks`); the target t_c of COCO category c is that LVIS category's
       instance count, capped at c's own count. (``targets`` by COCO category name replace this
       alignment, e.g. to reproduce a published per-class profile.)
    3. Images are visited once, in :func:`image_order` (seeded SHA-256 order). An image is taken
       when one of its instances belongs to a category still below its target (counted before the
       image). In a taken image, every instance of a category below target is kept (so a category
       can end above its target by less than its instances in one image: "as many instances in a
       sampled image as possible"); instances of categories that have reached their target are
       ignored (their category "has plenty"). The pass stops when every target is met.
       Afterwards, kept_c >= t_c for every category.
    4. Ignored instances stay in the json as ``iscrowd`` 1 (all else unchanged), not dropped:
       COCO's convention for "ignore" regions, which COCO's evaluation and mmdetection (BAGS's code
       base: crowd boxes become ``gt_bboxes_ignore``) count neither as positives nor as
       negatives; dropping them would make visible objects background. COCO's own crowd
       annotations of taken images are kept unchanged. (:func:`to_lvis_format` turns both into the
       image's ``not_exhaustive_category_ids``.)

    Every taken image therefore has at least one non-ignored instance; images without a
    non-crowd instance are never taken.

    Paper's result (not checked here: no COCO json on this machine): 9,100 images, 80 categories,
    64,504 instances. With LVIS v0.5's real counts (tests/data/lvis_v0.5_train_cat_info.json) the
    targets of step 2 sum to 64,295 (if no COCO category is capped), 0.3% under the paper's count,
    as step 3's overshoot predicts; they put 19 / 29 / 20 / 12 classes in BAGS's bins of [1, 10) /
    [10, 100) / [100, 1000) / [1000, inf) instances. (Aligning rank i with floor(i * N / K)
    instead gives targets summing to 65,058, more than the paper's total, which step 3 never
    undershoots.)

    Args:
        coco: a parsed COCO instances json (``images``, ``annotations`` with ``iscrowd``,
            ``categories``); not modified.
        lvis_stats: N records with ``instance_count`` (LVIS v0.5 train's ``categories``, or a
            cat-info list such as tests/data/lvis_v0.5_train_cat_info.json).
        seed: of the image order.
        num_categories: the number of COCO categories the json must have (None: any >= 2).
        targets: optional {COCO category name: target}, replacing step 2's alignment.
    Returns:
        a COCO-format dict: ``images`` (taken, ascending id), ``annotations`` (of taken images,
        json order; ignored ones with ``iscrowd`` 1), ``categories`` (all K, ascending id),
        ``licenses`` and ``info``, whose ``"coco_lt"`` entry records the seed and, per category,
        ``{"id", "name", "coco_instances", "target", "kept"}``.
    Raises:
        ValueError: wrong category count; an annotation naming a category or image the json lacks;
            statistics without ``instance_count``; targets naming a missing category.
    """
    cats = _coco_categories(coco, num_categories)
    cat_ids = {c["id"] for c in cats}
    anns_by_image = _annotations_by_image(coco, cat_ids)
    counts = coco_instance_counts(coco)
    if targets is not None:
        target = named_targets(cats, targets, counts)
    else:
        target = rank_aligned_targets(counts, lvis_stats)
    taken, ignored, kept = _sample(image_order((img["id"] for img in coco["images"]), seed),
                                   anns_by_image, target)
    taken_set = set(taken)
    annotations = [
        {**a, "iscrowd": 1} if id(a) in ignored else a
        for a in coco.get("annotations", []) if a["image_id"] in taken_set
    ]
    per_category = [{"id": c["id"], "name": c["name"], "coco_instances": counts[c["id"]],
                     "target": target[c["id"]], "kept": kept[c["id"]]} for c in cats]
    info = {**coco.get("info", {}), "description": "COCO-LT (BAGS, CVPR 2020, supplementary 4.1), built by lt_det",
            "coco_lt": {"seed": seed, "ignored_instances": len(ignored), "categories": per_category}}
    logger.info(f"COCO-LT: {len(taken)} images, {sum(kept.values())} instances kept "
                f"(targets sum to {sum(target.values())}), {len(ignored)} ignored")
    return {"info": info, "licenses": coco.get("licenses", []), "categories": cats,
            "images": sorted((img for img in coco["images"] if img["id"] in taken_set), key=lambda i: i["id"]),
            "annotations": annotations}


def _valid_polygons(segmentation) -> Optional[List[list]]:
    """The polygons of at least 3 points (an even number of coordinates, >= 6), or None when there
    are none (RLE, empty, degenerate): the LVIS-format loader accepts polygons only."""
    if not isinstance(segmentation, list):
        return None
    polygons = [p for p in segmentation if isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0]
    return polygons or None


def _lvis_annotations(coco_json: dict) -> Tuple[List[dict], Dict[int, Set[int]], Dict[int, Set[int]], int]:
    """The instance annotations of an LVIS-format json made from a COCO-format one.

    Returns:
        annotations: non-crowd annotations with valid polygons, ``{"id", "image_id",
            "category_id", "bbox", "area", "segmentation"}``.
        present: {image id: categories with any annotation (kept, crowd or invalid)}.
        not_exhaustive: {image id: categories with a crowd / ignored or invalid annotation}.
        num_invalid: non-crowd annotations dropped for lack of valid polygons.
    """
    annotations, num_invalid = [], 0
    present: Dict[int, Set[int]] = defaultdict(set)
    not_exhaustive: Dict[int, Set[int]] = defaultdict(set)
    for a in coco_json.get("annotations", []):
        present[a["image_id"]].add(a["category_id"])
        polygons = None if _is_crowd(a) else _valid_polygons(a.get("segmentation"))
        if polygons is None:
            not_exhaustive[a["image_id"]].add(a["category_id"])
            num_invalid += not _is_crowd(a)
            continue
        annotations.append({"id": a["id"], "image_id": a["image_id"], "category_id": a["category_id"],
                            "bbox": a["bbox"], "area": a.get("area", a["bbox"][2] * a["bbox"][3]),
                            "segmentation": polygons})
    return annotations, present, not_exhaustive, num_invalid


def _lvis_images(coco_json: dict, image_folder: str, cat_ids: Sequence[int], present: Mapping[int, Set[int]],
                 not_exhaustive: Mapping[int, Set[int]]) -> List[dict]:
    """COCO image records with ``file_name`` under ``image_folder`` and LVIS's image-level labels:
    every category without any annotation is a verified negative (COCO is exhaustively annotated)."""
    images = []
    for img in sorted(coco_json["images"], key=lambda i: i["id"]):
        file_name = f"{image_folder}/{img['file_name']}" if image_folder else img["file_name"]
        images.append({**img, "file_name": file_name,
                       "neg_category_ids": [c for c in cat_ids if c not in present.get(img["id"], ())],
                       "not_exhaustive_category_ids": sorted(not_exhaustive.get(img["id"], ()))})
    return images


def _lvis_categories(categories: Sequence[dict], lvis_json: dict,
                     train_categories: Optional[Sequence[Mapping]]) -> List[dict]:
    """The categories with the training split's ``image_count`` / ``instance_count`` /
    ``frequency``: ``train_categories``' (matched by id), else counted from the annotations of
    ``lvis_json`` that lt_det's loader keeps (:mod:`lt_det.data.annotation_checks`)."""
    if train_categories is None:
        source = "COCO-LT training json"
        bare = {**lvis_json, "categories": [{"id": c["id"], "name": c["name"]} for c in categories]}
        kept = [a for anns in check_lvis_json(bare, source).values() for a in anns]
        train_categories, _ = class_statistics(bare, source=source, annotations=kept)
    stats = {r["id"]: r for r in train_categories}
    missing = [c["name"] for c in categories if c["id"] not in stats]
    if missing or len(stats) != len(categories):
        raise ValueError(f"The training statistics do not match the json's {len(categories)} categories "
                         f"(missing: {missing[:10]}; the statistics have {len(stats)})")
    out = []
    for c in categories:
        s = stats[c["id"]]
        frequency = s.get("frequency") or frequency_group(int(s["image_count"]))
        out.append({**c, "image_count": int(s["image_count"]), "instance_count": int(s["instance_count"]),
                    "frequency": frequency})
    return out


def to_lvis_format(coco_json: dict, image_folder: str,
                   train_categories: Optional[Sequence[Mapping]] = None) -> dict:
    """An LVIS-format copy of a COCO-format json (COCO-LT's training json, or COCO val2017), for
    :func:`lt_det.data.datasets.register_lvis_format` and lt_det's LVIS evaluator.

    * ``annotations``: the non-crowd ones (``iscrowd`` 0) with valid polygons. Crowd annotations
      (COCO's own, and instances :func:`build_coco_lt` ignored) and annotations without a valid
      polygon (RLE, fewer than 3 points; logged) are left out, and their category goes into the
      image's ``not_exhaustive_category_ids``: LVIS's label for "present, not every instance
      annotated", under which LVIS's evaluation does not count the category's unmatched
      detections in that image as false positives (COCO's evaluation ignores only those matched
      to the crowd region; lt_det's training drops such regions, as detectron2's mapper drops
      crowd annotations, so they are background there).
    * ``neg_category_ids``: every category with no annotation at all in the image. COCO is
      exhaustively annotated, so absence is verified; with empty lists, LVIS's federated
      evaluation would ignore all false positives of absent categories and inflate AP.
    * images: COCO's records with ``file_name`` prefixed by ``image_folder`` ("train2017",
      "val2017"), so one image root (COCO's folder) serves both splits.
    * categories: COCO's, plus the training split's ``image_count``, ``instance_count`` and
      ``frequency`` (LVIS's r/c/f rule: rare <= 10 training images, common <= 100), as LVIS's own
      jsons carry them: counted from this json's converted annotations that lt_det's loader keeps
      (it drops empty boxes and boxes outside the image) when ``train_categories`` is None (a
      training split), else copied from those records (the training split's, for val).

    Evaluation differs from BAGS's (mmdetection's COCO evaluation of COCO val2017): lvis-api
    keeps each image's top 300 detections (COCO: 100; run inference with
    ``TEST.DETECTIONS_PER_IMAGE 100`` for COCO's cap), and crowd regions are handled per image and
    category as above rather than per region. lt_det reports BAGS's AP1-AP4 bins from the
    categories' ``instance_count``.

    Args:
        coco_json: a COCO-format dict (``images``, ``annotations``, ``categories``); not modified.
        image_folder: the images' folder under the image root ("" for none).
        train_categories: records ``{"id", "image_count", "instance_count"[, "frequency"]}`` of
            the training split, one per category.
    Returns:
        the LVIS-format dict (``info``, ``licenses``, ``categories``, ``images``, ``annotations``).
    """
    categories = sorted(coco_json["categories"], key=lambda c: c["id"])
    cat_ids = [c["id"] for c in categories]
    annotations, present, not_exhaustive, num_invalid = _lvis_annotations(coco_json)
    if num_invalid:
        logger.warning(f"{num_invalid} non-crowd annotations have no valid polygon (RLE or < 3 points) and were "
                       "left out; their categories are marked not exhaustive in their images")
    lvis_json = {"info": coco_json.get("info", {}), "licenses": coco_json.get("licenses", []),
                 "images": _lvis_images(coco_json, image_folder, cat_ids, present, not_exhaustive),
                 "annotations": annotations}
    lvis_json["categories"] = _lvis_categories(categories, lvis_json, train_categories)
    return lvis_json


def register_coco_lt(json_dir: str, image_root: str, name: str = "coco_lt",
                     splits: Sequence[str] = ("train", "val")) -> None:
    """Registers ``{name}_{split}`` from ``json_dir/{name}_{split}.json`` (LVIS format, written by
    tools/build_coco_lt.py) with images under ``image_root`` (COCO's folder, holding train2017/
    and val2017/), if not registered yet.

    As for the synthetic set, the names are registered whether or not the files exist yet: a run
    that uses them before they are built fails on load with the missing json's path.
    """
    for split in splits:
        dataset = f"{name}_{split}"
        if dataset not in DatasetCatalog.list():
            register_lvis_format(dataset, os.path.join(json_dir, f"{name}_{split}.json"), image_root)

"""Registration of any LVIS-format dataset, with per-class statistics in its metadata.

Why not detectron2's ``register_lvis_instances``: detectron2 0.6's ``load_lvis_json`` only accepts
dataset names with built-in metadata (``lvis_v0.5_*``, ``lvis_v1_*``) and maps category ids by
``id - 1``, so a synthetic set, COCO-LT or a user's json with other ids cannot be registered. This
loader accepts any LVIS-format json, maps ids through the json's own category list, and writes
the class statistics (:mod:`lt_det.data.class_stats`) that every long-tail component reads.

Each dataset dict follows detectron2's standard format, plus the LVIS image-level labels
``neg_category_ids`` and ``not_exhaustive_category_ids`` as *contiguous* class ids (0..K-1);
detectron2's ``DatasetMapper`` keeps these keys, so they reach the model in ``batched_inputs``.

Each json is validated on load (:mod:`lt_det.data.annotation_checks`: errors for corrupt data,
documented drops and clipping of boxes outside the image); the dataset dicts and the class
statistics counted from annotations both see the kept annotations only.
"""
import contextlib
import json
import logging
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from detectron2.utils.file_io import PathManager

from .annotation_checks import check_category_ids, check_lvis_json

logger = logging.getLogger(__name__)

LVIS_RARE_MAX_IMAGES = 10  # LVIS: rare = 1-10 training images
LVIS_COMMON_MAX_IMAGES = 100  # LVIS: common = 11-100, frequent > 100


def frequency_group(image_count: int, common_max: int = LVIS_COMMON_MAX_IMAGES) -> str:
    """LVIS's "r" / "c" / "f" of a class seen in ``image_count`` training images (rare: 1-10;
    common: up to ``common_max``, LVIS's 100 unless a smaller set scales it)."""
    if image_count <= LVIS_RARE_MAX_IMAGES:
        return "r"
    return "c" if image_count <= common_max else "f"


# Parsed jsons by (real path, modification time), while a parse_each_json_once() context is open.
_parsed_jsons: Optional[Dict[Tuple[str, int], dict]] = None
# check_lvis_json's result for each of those parsed jsons, by id(json): (json, kept annotations).
_checked_jsons: Optional[Dict[int, Tuple[dict, Dict[int, List[dict]]]]] = None


@contextlib.contextmanager
def parse_each_json_once() -> Iterator[None]:
    """Within this context, each LVIS-format json is parsed at most once; its readers share the
    parsed copy, which they must not modify.

    A trainer reads the training json twice while it is built: the box predictor's loss needs the
    class statistics (:func:`ensure_class_stats`), then the data loader the dataset dicts. The
    parsed copies are dropped on exit rather than kept for the process: LVIS v1's training json
    takes GBs once parsed, and data loader workers would inherit it. Nested contexts share the
    outermost one's copies. The validation of each json (:func:`_checked_annotations`) is shared
    the same way.
    """
    global _parsed_jsons, _checked_jsons
    if _parsed_jsons is not None:
        yield
        return
    _parsed_jsons, _checked_jsons = {}, {}
    try:
        yield
    finally:
        _parsed_jsons, _checked_jsons = None, None


def load_json(json_file: str) -> dict:
    """The parsed json; within :func:`parse_each_json_once`, one copy shared by every reader (who
    must not modify it)."""
    if not PathManager.exists(json_file):
        raise FileNotFoundError(f"LVIS-format annotation json not found: {json_file}")
    local_file = PathManager.get_local_path(json_file)
    key = (os.path.realpath(local_file), os.stat(local_file).st_mtime_ns)
    if _parsed_jsons is not None and key in _parsed_jsons:
        return _parsed_jsons[key]
    with open(local_file) as f:
        data = json.load(f)
    if _parsed_jsons is not None:
        _parsed_jsons[key] = data
    return data


def _checked_annotations(data: dict, json_file: str) -> Dict[int, List[dict]]:
    """:func:`~lt_det.data.annotation_checks.check_lvis_json` of a parsed json: {image id: kept
    annotations}; computed once per parsed json within a :func:`parse_each_json_once` context."""
    if _checked_jsons is not None and id(data) in _checked_jsons:
        return _checked_jsons[id(data)][1]
    kept = check_lvis_json(data, json_file)
    if _checked_jsons is not None:
        _checked_jsons[id(data)] = (data, kept)  # the json is held, so its id is not reused
    return kept


def class_statistics(lvis_json: dict, source: str = "",
                     annotations: Optional[Sequence[dict]] = None) -> Tuple[List[dict], int]:
    """Per-class statistics of an LVIS-format json, sorted by category id.

    ``image_count`` / ``instance_count`` / ``frequency`` are taken from the json's categories when
    all three are present (LVIS's own jsons); otherwise they are counted from the annotations
    (logged), with LVIS's frequency thresholds (rare <= 10 images, common <= 100). An annotation
    with a category id that is not in ``categories`` is a ``ValueError``.

    Args:
        lvis_json: the parsed json (``categories``, optionally ``annotations``).
        source: its path, for messages.
        annotations: the annotations to count, by default the json's; the loader passes those
            kept by :mod:`lt_det.data.annotation_checks`, so that the statistics agree with what
            trains.
    Returns:
        records: K dicts ``{"id", "name", "image_count", "instance_count", "frequency"}``
        num_annotated_images: M, the number of images with at least one annotation.
    """
    cats = sorted(lvis_json["categories"], key=lambda c: c["id"])
    anns = lvis_json.get("annotations", []) if annotations is None else annotations
    num_annotated_images = len({a["image_id"] for a in anns})
    keys = ("image_count", "instance_count", "frequency")
    if all(k in c for c in cats for k in keys):
        counts = {c["id"]: (c["image_count"], c["instance_count"], c["frequency"]) for c in cats}
    else:
        logger.info(
            f"{source or 'json'}: categories lack image_count / instance_count / frequency; "
            f"counting them from {len(anns)} annotations"
        )
        images: Dict[int, set] = {c["id"]: set() for c in cats}
        instances = {c["id"]: 0 for c in cats}
        check_category_ids(anns, instances.keys(), source or "json")
        for a in anns:
            images[a["category_id"]].add(a["image_id"])
            instances[a["category_id"]] += 1
        counts = {}
        for cid, imgs in images.items():
            counts[cid] = (len(imgs), instances[cid], frequency_group(len(imgs)))
    records = [
        {"id": c["id"], "name": c["name"], "image_count": int(counts[c["id"]][0]),
         "instance_count": int(counts[c["id"]][1]), "frequency": counts[c["id"]][2]}
        for c in cats
    ]
    return records, num_annotated_images


def _image_path(image_root: str, img: dict) -> str:
    if "file_name" in img:
        return os.path.join(image_root, img["file_name"])
    # LVIS's own jsons name images only by coco_url, e.g. ".../train2017/000000391895.jpg";
    # the split folder is its second-to-last component (as detectron2's loader reads it).
    split_folder, file_name = img["coco_url"].split("/")[-2:]
    return os.path.join(image_root, split_folder, file_name)


def load_lvis_format_json(json_file: str, image_root: str, dataset_name: Optional[str] = None) -> List[dict]:
    """Loads an LVIS-format json as detectron2 dataset dicts.

    The json is validated and cleaned first (:mod:`lt_det.data.annotation_checks`: its policy says
    which bad ground truth is an error, which is dropped and which is clipped to the image). When
    ``dataset_name`` is given, also writes the dataset's metadata (classes, id mapping and class
    statistics) to ``MetadataCatalog``.
    """
    data = load_json(json_file)
    if not os.path.isdir(image_root):
        raise FileNotFoundError(f"Image root of dataset '{dataset_name}' not found: {image_root}")
    anns_per_image = _checked_annotations(data, json_file)
    cats = sorted(data["categories"], key=lambda c: c["id"])
    id_map = {c["id"]: i for i, c in enumerate(cats)}
    if dataset_name is not None:
        _set_metadata(dataset_name, data, json_file, anns_per_image)

    dataset_dicts = []
    for img in sorted(data["images"], key=lambda x: x["id"]):
        objs = [{"bbox": a["bbox"], "bbox_mode": BoxMode.XYWH_ABS, "category_id": id_map[a["category_id"]],
                 "segmentation": a["segmentation"]} for a in anns_per_image.get(img["id"], [])]
        dataset_dicts.append({
            "file_name": _image_path(image_root, img),
            "height": img["height"],
            "width": img["width"],
            "image_id": img["id"],
            "neg_category_ids": [id_map[c] for c in img.get("neg_category_ids", [])],
            "not_exhaustive_category_ids": [id_map[c] for c in img.get("not_exhaustive_category_ids", [])],
            "annotations": objs,
        })
    logger.info(f"Loaded {len(dataset_dicts)} images in LVIS format from {json_file}")
    return dataset_dicts


def _set_metadata(name: str, data: dict, json_file: str,
                  anns_per_image: Optional[Dict[int, List[dict]]] = None) -> None:
    """Writes the dataset's classes, id mapping and class statistics (of the annotations kept by
    the checks, ``anns_per_image`` when the caller has them) to its metadata, where not set yet."""
    if anns_per_image is None:
        anns_per_image = _checked_annotations(data, json_file)
    kept = [a for anns in anns_per_image.values() for a in anns]
    records, num_annotated = class_statistics(data, source=json_file, annotations=kept)
    cats = sorted(data["categories"], key=lambda c: c["id"])
    meta = MetadataCatalog.get(name)
    # Metadata values are write-once in detectron2: set only what is not there yet (builtin LVIS
    # names already carry thing_classes / id maps from detectron2).
    values = {
        "thing_classes": [c["name"] for c in cats],
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(cats)},
        "class_statistics": records,
        "num_annotated_images": num_annotated,
        "num_all_images": len(data["images"]),
        # detectron2 main's federated-loss weights read {"id", "image_count"} records under this
        # key (its built-in LVIS v1 metadata sets them; then they are kept).
        "class_image_count": records,
    }
    for key, value in values.items():
        if not hasattr(meta, key):
            meta.set(**{key: value})


def ensure_class_stats(name: str) -> None:
    """Reads a registered dataset's json once to put its class statistics into its metadata.

    Lets components that are built before the data loader (the box predictor's loss) read the
    statistics of a dataset whose dicts have not been loaded yet.
    """
    meta = MetadataCatalog.get(name)
    if hasattr(meta, "class_statistics") and hasattr(meta, "num_annotated_images"):
        return
    if name not in DatasetCatalog.list():
        raise KeyError(f"Dataset '{name}' is not registered. Registered datasets: {sorted(DatasetCatalog.list())}")
    if not hasattr(meta, "json_file"):
        return  # not LVIS format: get_class_stats will say what is missing
    _set_metadata(name, load_json(meta.json_file), meta.json_file)


def register_lvis_format(name: str, json_file: str, image_root: str, metadata: Optional[dict] = None) -> None:
    """Registers an LVIS-format dataset under ``name`` (``evaluator_type`` "lvis")."""
    DatasetCatalog.register(name, lambda: load_lvis_format_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="lvis",
                                  **(metadata or {}))


def reregister_builtin_lvis() -> None:
    """Routes detectron2's registered LVIS datasets (``lvis_v1_train``, ...) through this loader.

    Every registered dataset whose metadata says it is LVIS (``evaluator_type`` "lvis", with a
    ``json_file``), as detectron2's ``register_lvis_instances`` records it: its json, image root and
    class names are kept; only the loader changes, so image-level labels come as contiguous ids and
    statistics are recorded.
    """
    for name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        if meta.get("evaluator_type") != "lvis" or meta.get("json_file") is None:
            continue
        DatasetCatalog.remove(name)
        DatasetCatalog.register(
            name, lambda m=meta, n=name: load_lvis_format_json(m.json_file, m.image_root, n)
        )


def register_synthetic_lt(root: str, name: str = "synthetic_lt", splits: Sequence[str] = ("train", "val")) -> None:
    """Registers a generated synthetic set (:func:`lt_det.data.synthetic.generate`) under
    ``{name}_{split}``, its jsons ``root/{name}_{split}.json``, if not registered yet."""
    for split in splits:
        dataset = f"{name}_{split}"
        if dataset not in DatasetCatalog.list():
            register_lvis_format(dataset, os.path.join(root, f"{name}_{split}.json"), root)

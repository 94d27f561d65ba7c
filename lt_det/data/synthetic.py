"""A deterministic synthetic long-tailed instance-segmentation dataset in LVIS format.

Why it exists: tests and the default demo must run on a machine with no dataset downloads and two
CPU cores, yet exercise what matters for long-tail detection: a class-frequency profile shaped like
LVIS's (many frequent-class images, rare classes seen in 1-10 training images), federated
annotations (``neg_category_ids`` / ``not_exhaustive_category_ids``) and per-class statistics.

Design:

* Each class is a (shape, colour) pair: 8 shapes x 6 colours, classes drawn without replacement
  and assigned to frequency ranks at random, so a rare class shares its shape or colour with
  frequent ones (the detector must combine both cues, as a long-tailed detector must).
* Objects are filled polygons on a noisy grey gradient; the annotation's segmentation is exactly
  the drawn polygon. Objects never overlap, so every mask is fully visible.
* Training image counts per class follow three log-spaced ranges, one per LVIS frequency group:
  frequent ``max_images_per_class`` down to the common/frequent boundary + 1, common from the
  boundary down to 11, rare 10 down to 1 (LVIS: rare = 1-10 training images).
* Frequency thresholds: LVIS's rare group is "1-10 training images" and is kept as is, since it
  describes few-shot-ness rather than dataset size. LVIS's common/frequent boundary (100 images)
  is scaled with the largest class: ``boundary = 100 * max_images_per_class / 400``, i.e. exactly
  100 at the default size. Both are stored per category in ``frequency``.
* Annotation is exhaustive: every image lists every absent class in ``neg_category_ids`` (without
  this, LVIS evaluation ignores false positives and inflates AP) and ``not_exhaustive_category_ids``
  is empty.
* The validation split is class balanced (``val_instances_per_class`` instances of every class),
  so rare-class AP is measured on as many instances as frequent-class AP. An optional held-out
  split (``heldout_instances_per_class`` > 0), drawn the same way, is for choosing test-time
  parameters (τ of τ-normalisation) without touching the validation split.
* ``palette="pretrain"`` draws its classes from other shapes and colours
  (``PRETRAIN_SHAPES`` x ``PRETRAIN_COLOURS``), so a backbone pretrained on such a set has seen
  none of the benchmark's classes, as ImageNet stands in for LVIS; ``profile="uniform"`` gives
  every class ``max_images_per_class`` training images (a balanced pretraining set).
* Categories of both splits carry the training ``image_count``, ``instance_count`` and
  ``frequency``, as LVIS's own jsons do.

Everything is drawn from ``numpy.random.default_rng(seed)``: the same arguments give byte-identical
jsons and images.
"""
import json
import hashlib
import math
import os
from dataclasses import asdict, dataclass
from typing import Dict, List, Tuple

import cv2
import numpy as np

from .datasets import LVIS_COMMON_MAX_IMAGES, LVIS_RARE_MAX_IMAGES, frequency_group

SHAPES = ("circle", "square", "triangle", "diamond", "pentagon", "hexagon", "star", "cross")
COLOURS = {  # RGB, far apart so a colour is identifiable under the noise
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 210, 40),
    "magenta": (200, 50, 200),
    "cyan": (40, 200, 210),
}
# A second, disjoint class vocabulary: no shape and no colour in common with the one above.
PRETRAIN_SHAPES = ("ellipse", "heptagon", "octagon", "arrow", "trapezoid", "semicircle", "chevron",
                   "parallelogram")
PRETRAIN_COLOURS = {
    "orange": (245, 140, 20),
    "purple": (110, 30, 150),
    "white": (245, 245, 245),
    "brown": (120, 70, 30),
    "pink": (250, 150, 200),
    "black": (15, 15, 15),
}
PALETTES = {"lt": (SHAPES, COLOURS), "pretrain": (PRETRAIN_SHAPES, PRETRAIN_COLOURS)}
PROFILES = ("long_tail", "uniform")
GENERATOR_VERSION = 2  # bump when the same parameters start producing different output
DEFAULT_MAX_IMAGES_PER_CLASS = 400  # the size at which the LVIS boundary 100 is used unscaled


@dataclass(frozen=True)
class SyntheticLTConfig:
    """Parameters of the generator; the defaults fit the demo's 15-minute CPU budget."""

    num_classes: int = 40  # at most len(SHAPES) * len(COLOURS) = 48
    max_images_per_class: int = DEFAULT_MAX_IMAGES_PER_CLASS  # training images of the top class
    rare_fraction: float = 0.35  # share of rare classes (LVIS v1: 337 / 1203 = 0.28)
    common_fraction: float = 0.325  # share of common classes (LVIS v1: 461 / 1203 = 0.38)
    max_objects_per_image: int = 4  # distinct classes per image
    second_instance_prob: float = 0.2  # chance a class in a train image gets a 2nd instance
    val_instances_per_class: int = 8
    image_size: int = 128
    min_object_size: int = 18
    max_object_size: int = 44
    seed: int = 0
    heldout_instances_per_class: int = 0  # 0: no held-out split
    palette: str = "lt"  # a key of PALETTES: the class vocabulary
    profile: str = "long_tail"  # a member of PROFILES: training images per class

    @property
    def common_max_images(self) -> int:
        """The common/frequent boundary: LVIS's 100 images, scaled with the largest class."""
        scaled = LVIS_COMMON_MAX_IMAGES * self.max_images_per_class / DEFAULT_MAX_IMAGES_PER_CLASS
        return max(LVIS_RARE_MAX_IMAGES + 1, int(round(scaled)))


def class_image_counts(cfg: SyntheticLTConfig) -> List[int]:
    """Target number of training images per frequency rank, (num_classes,), descending."""
    if cfg.profile == "uniform":
        return [cfg.max_images_per_class] * cfg.num_classes
    n_rare = int(round(cfg.rare_fraction * cfg.num_classes))
    n_common = int(round(cfg.common_fraction * cfg.num_classes))
    n_freq = cfg.num_classes - n_rare - n_common
    if min(n_rare, n_common, n_freq) < 1:
        raise ValueError(f"num_classes={cfg.num_classes} is too small for three frequency groups")

    def logspace(hi: float, lo: float, n: int) -> List[int]:
        return [int(round(v)) for v in np.geomspace(hi, lo, n)] if n > 1 else [int(round(hi))]

    return (
        logspace(cfg.max_images_per_class, cfg.common_max_images + 1, n_freq)
        + logspace(cfg.common_max_images, LVIS_RARE_MAX_IMAGES + 1, n_common)
        + logspace(LVIS_RARE_MAX_IMAGES, 1, n_rare)
    )


def _polygon(shape: str, cx: float, cy: float, size: float, angle: float) -> np.ndarray:
    """Vertices (V, 2) of a shape of the given diameter centred at (cx, cy), rotated by angle."""
    r = size / 2.0
    if shape == "circle":
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif shape in ("square", "triangle", "diamond", "pentagon", "hexagon"):
        n = {"square": 4, "triangle": 3, "diamond": 4, "pentagon": 5, "hexagon": 6}[shape]
        offset = np.pi / 4 if shape == "square" else np.pi / 2
        t = offset + np.linspace(0, 2 * np.pi, n, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1)
        if shape == "diamond":
            pts = pts * np.array([0.6, 1.0])
    elif shape == "star":
        t = np.pi / 2 + np.linspace(0, 2 * np.pi, 10, endpoint=False)
        radius = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        pts = np.stack([np.cos(t), np.sin(t)], 1) * radius[:, None]
    elif shape == "ellipse":
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        pts = np.stack([np.cos(t), 0.55 * np.sin(t)], 1)
    elif shape in ("heptagon", "octagon"):
        n = 7 if shape == "heptagon" else 8
        t = np.pi / 2 + np.linspace(0, 2 * np.pi, n, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif shape == "arrow":
        pts = np.array([[1.0, 0.0], [0.2, 0.8], [0.2, 0.3], [-1.0, 0.3], [-1.0, -0.3], [0.2, -0.3],
                        [0.2, -0.8]])
    elif shape == "trapezoid":
        pts = np.array([[-1.0, 0.6], [1.0, 0.6], [0.45, -0.6], [-0.45, -0.6]])
    elif shape == "semicircle":
        t = np.linspace(0, np.pi, 13)
        pts = np.stack([np.cos(t), np.sin(t) - 0.4], 1)
    elif shape == "chevron":
        pts = np.array([[-1.0, 0.8], [0.0, -0.2], [1.0, 0.8], [1.0, 0.1], [0.0, -0.9], [-1.0, 0.1]])
    elif shape == "parallelogram":
        pts = np.array([[-1.0, -0.5], [0.4, -0.5], [1.0, 0.5], [-0.4, 0.5]])
    elif shape == "cross":
        a, b = 1.0, 0.35
        pts = np.array([[b, a], [b, b], [a, b], [a, -b], [b, -b], [b, -a],
                        [-b, -a], [-b, -b], [-a, -b], [-a, b], [-b, b], [-b, a]])
    else:
        raise ValueError(shape)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return pts @ rot.T * r + np.array([cx, cy])


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    lo, hi = rng.uniform(60, 110), rng.uniform(140, 200)
    ramp = np.linspace(lo, hi, size)
    grad = ramp[None, :] if rng.random() < 0.5 else ramp[:, None]
    img = np.broadcast_to(grad, (size, size))[..., None] + rng.normal(0, 12, (size, size, 3))
    return img


def _place(rng, cfg: SyntheticLTConfig, taken: List[Tuple[float, float, float, float]]):
    """A square slot (x0, y0, x1, y1) that overlaps no taken slot, or None after 50 tries."""
    for _ in range(50):
        s = rng.uniform(cfg.min_object_size, cfg.max_object_size)
        x0, y0 = rng.uniform(1, cfg.image_size - s - 1, 2)
        box = (x0, y0, x0 + s, y0 + s)
        if all(box[2] <= t[0] or t[2] <= box[0] or box[3] <= t[1] or t[3] <= box[1] for t in taken):
            return box
    return None


def _pack_images(rng, per_class_images: Dict[int, int], max_per_image: int) -> List[List[int]]:
    """Distribute per-class image tickets over images, each image holding distinct classes.

    Every new image draws a capacity uniformly in 1..max_per_image; a ticket goes to the oldest
    open image that lacks its class, else opens a new image.

    Returns:
        list of images, each the list of category ids it contains; class c appears in exactly
        ``per_class_images[c]`` images.
    """
    tickets = [c for c, n in per_class_images.items() for _ in range(n)]
    rng.shuffle(tickets)
    done: List[List[int]] = []
    open_images: List[Tuple[List[int], int]] = []  # (classes, capacity)
    for c in tickets:
        slot = next((i for i, (classes, _) in enumerate(open_images) if c not in classes), None)
        if slot is None:
            open_images.append(([], int(rng.integers(1, max_per_image + 1))))
            slot = len(open_images) - 1
        classes, capacity = open_images[slot]
        classes.append(c)
        if len(classes) == capacity:
            done.append(open_images.pop(slot)[0])
    done.extend(classes for classes, _ in open_images)
    return [done[i] for i in rng.permutation(len(done))]


def _render_split(rng, cfg, images_classes, class_defs, split, out_dir, first_ann_id, second_prob):
    """Draws the images of one split; returns (images, annotations) json records.

    Each listed class gets one instance, and a second one with probability ``second_prob``.
    """
    os.makedirs(os.path.join(out_dir, split), exist_ok=True)
    all_ids = set(range(1, cfg.num_classes + 1))
    images, annotations = [], []
    ann_id = first_ann_id
    for idx, classes in enumerate(images_classes):
        image_id = idx + 1
        canvas = _background(rng, cfg.image_size)
        taken = []
        present = set()
        instances = [c for c in classes for _ in range(1 + int(rng.random() < second_prob))]
        for cat_id in instances:
            box = _place(rng, cfg, taken)
            if box is None:
                continue
            taken.append(box)
            shape, colour = class_defs[cat_id]
            colours = PALETTES[cfg.palette][1]
            size = box[2] - box[0]
            poly = _polygon(shape, (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, size,
                            rng.uniform(0, 2 * np.pi))
            rgb = np.clip(np.array(colours[colour]) + rng.normal(0, 10, 3), 0, 255)
            cv2.fillPoly(canvas, [np.round(poly * 16).astype(np.int32)], rgb.tolist(),
                         lineType=cv2.LINE_AA, shift=4)
            x0, y0 = poly.min(0)
            x1, y1 = poly.max(0)
            flat = [round(float(v), 2) for v in poly.reshape(-1)]
            area = float(cv2.contourArea(poly.astype(np.float32)))
            annotations.append({
                "id": ann_id, "image_id": image_id, "category_id": cat_id,
                "segmentation": [flat], "area": round(area, 2),
                "bbox": [round(float(x0), 2), round(float(y0), 2),
                         round(float(x1 - x0), 2), round(float(y1 - y0), 2)],
            })
            present.add(cat_id)
            ann_id += 1
        file_name = f"{split}/{image_id:06d}.png"
        cv2.imwrite(os.path.join(out_dir, file_name),
                    cv2.cvtColor(np.clip(canvas, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
        images.append({
            "id": image_id, "width": cfg.image_size, "height": cfg.image_size,
            "file_name": file_name,
            # detectron2 0.6's LVIS loader builds paths from coco_url's last two components.
            "coco_url": f"synthetic://{file_name}",
            "neg_category_ids": sorted(all_ids - present),
            "not_exhaustive_category_ids": [],
        })
    return images, annotations


def generate(out_dir: str, cfg: SyntheticLTConfig = SyntheticLTConfig(), name: str = "synthetic_lt") -> Dict[str, str]:
    """Writes ``{out_dir}/{split}/*.png`` and ``{out_dir}/{name}_{split}.json`` for the splits
    train, val and (when ``cfg.heldout_instances_per_class`` > 0) heldout.

    Returns:
        {split: json_path}
    """
    if cfg.palette not in PALETTES:
        raise ValueError(f"palette must be one of {sorted(PALETTES)}, not {cfg.palette!r}")
    if cfg.profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, not {cfg.profile!r}")
    shapes, colours = PALETTES[cfg.palette]
    if cfg.num_classes > len(shapes) * len(colours):
        raise ValueError(f"num_classes must be <= {len(shapes) * len(colours)} (shape x colour pairs)")
    rng = np.random.default_rng(cfg.seed)
    pairs = [(s, c) for s in shapes for c in colours]
    chosen = rng.permutation(len(pairs))[: cfg.num_classes]
    class_defs = {i + 1: pairs[j] for i, j in enumerate(chosen)}  # category id -> (shape, colour)
    counts = class_image_counts(cfg)
    rank_to_cat = rng.permutation(cfg.num_classes) + 1  # frequency rank -> category id
    train_counts = {int(rank_to_cat[r]): counts[r] for r in range(cfg.num_classes)}

    train_classes = _pack_images(rng, train_counts, cfg.max_objects_per_image)
    val_tickets = {c: cfg.val_instances_per_class for c in class_defs}
    val_classes = _pack_images(rng, val_tickets, cfg.max_objects_per_image)

    train_imgs, train_anns = _render_split(rng, cfg, train_classes, class_defs, "train", out_dir, 1,
                                           cfg.second_instance_prob)
    val_imgs, val_anns = _render_split(rng, cfg, val_classes, class_defs, "val", out_dir,
                                       len(train_anns) + 1, 0.0)
    splits = [("train", train_imgs, train_anns), ("val", val_imgs, val_anns)]
    if cfg.heldout_instances_per_class > 0:  # drawn last: train and val do not depend on it
        heldout_tickets = {c: cfg.heldout_instances_per_class for c in class_defs}
        heldout_classes = _pack_images(rng, heldout_tickets, cfg.max_objects_per_image)
        splits.append(("heldout", *_render_split(rng, cfg, heldout_classes, class_defs, "heldout", out_dir,
                                                 len(train_anns) + len(val_anns) + 1, 0.0)))

    image_count = {c: 0 for c in class_defs}
    instance_count = {c: 0 for c in class_defs}
    for c, img in {(a["category_id"], a["image_id"]) for a in train_anns}:
        image_count[c] += 1
    for a in train_anns:
        instance_count[a["category_id"]] += 1
    categories = [
        {"id": c, "name": f"{class_defs[c][1]}_{class_defs[c][0]}", "synset": f"synthetic.{c}",
         "image_count": image_count[c], "instance_count": instance_count[c],
         "frequency": frequency_group(image_count[c], cfg.common_max_images)}
        for c in sorted(class_defs)
    ]
    paths = {}
    for split, imgs, anns in splits:
        paths[split] = os.path.join(out_dir, f"{name}_{split}.json")
        data = {"info": {"description": "lt_det synthetic long-tailed set", "generator": asdict(cfg),
                         "generator_version": GENERATOR_VERSION},
                "licenses": [], "categories": categories, "images": imgs, "annotations": anns}
        with open(paths[split], "w") as f:
            json.dump(data, f)
    return paths


def is_up_to_date(out_dir: str, cfg: SyntheticLTConfig, name: str = "synthetic_lt") -> bool:
    """Whether ``out_dir`` holds every json of :func:`generate` made with ``cfg`` by this version."""
    splits = ("train", "val") + (("heldout",) if cfg.heldout_instances_per_class > 0 else ())
    for split in splits:
        path = os.path.join(out_dir, f"{name}_{split}.json")
        if not os.path.exists(path):
            return False
        with open(path) as f:
            info = json.load(f)["info"]
        if info.get("generator") != asdict(cfg) or info.get("generator_version") != GENERATOR_VERSION:
            return False
    return True


def fingerprint(out_dir: str, cfg: SyntheticLTConfig, name: str = "synthetic_lt") -> str:
    """SHA-256 (hex) of what :func:`generate` wrote: every split's json, parsed and re-serialised
    with sorted keys, and every image's decoded pixels (shape and bytes), in file-name order.

    Decoded pixels, not file bytes: PNG encoders may compress the same image differently; a
    different fingerprint means different data (another OpenCV rasterising the shapes, a numpy
    drawing other random numbers, an edited file).

    Raises:
        FileNotFoundError: a json or an image it lists is missing.
    """
    digest = hashlib.sha256()
    splits = ("train", "val") + (("heldout",) if cfg.heldout_instances_per_class > 0 else ())
    for split in splits:
        with open(os.path.join(out_dir, f"{name}_{split}.json")) as f:
            data = json.load(f)
        digest.update(json.dumps(data, sort_keys=True).encode())
        for img in sorted(data["images"], key=lambda i: i["file_name"]):
            path = os.path.join(out_dir, img["file_name"])
            pixels = cv2.imread(path, cv2.IMREAD_UNCHANGED)
            if pixels is None:
                raise FileNotFoundError(f"Image {path} (listed in {name}_{split}.json) is missing or unreadable")
            digest.update(str(pixels.shape).encode())
            digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()

#!/usr/bin/env python
"""Per-class statistics of a COCO- or LVIS-format annotation json.

    python tools/class_stats.py ANNOTATIONS.json [--output stats.json] [--from-annotations]

Writes (to --output, else stdout) ``{"source", "counted_from", "num_annotated_images",
"crowd_annotations", "categories": [{"id", "name", "image_count", "instance_count", "frequency"},
...]}`` sorted by category id, and prints a summary: classes per LVIS frequency group (r/c/f) and
per BAGS instance bin (AP1: [1, 10) training instances, AP2: [10, 100), AP3: [100, 1000), AP4:
[1000, inf)).

The statistics are lt_det's own (:func:`lt_det.data.datasets.class_statistics`, what the loader
writes into a dataset's metadata): an LVIS json's categories carry ``image_count`` /
``instance_count`` / ``frequency`` (an LVIS val json carries the *training* split's), and they are
reported as they are unless ``--from-annotations`` asks to count the json's own annotations;
otherwise (COCO jsons) they are counted, with LVIS's frequency rule (rare: <= 10 images, common:
<= 100, frequent: more). Crowd annotations (``iscrowd`` 1) are never counted as instances.
"""
import argparse
import json
import os
import sys
from collections import Counter
from typing import List, Optional

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lt_det.data.class_stats import FREQUENCY_GROUPS  # noqa: E402
from lt_det.data.datasets import class_statistics  # noqa: E402
from lt_det.evaluation.metrics import INSTANCE_BINS, instance_bin  # noqa: E402

_COUNT_KEYS = ("image_count", "instance_count", "frequency")


def class_stats_report(data: dict, source: str = "", from_annotations: bool = False) -> dict:
    """The statistics of a parsed json (keys in the module docstring).

    Args:
        data: ``categories`` and (optionally) ``annotations``.
        source: the json's path, for messages and the report.
        from_annotations: count the annotations even when the categories carry counts.
    """
    categories = data["categories"]
    if from_annotations:
        categories = [{k: v for k, v in c.items() if k not in _COUNT_KEYS} for c in categories]
    annotations = data.get("annotations", [])
    instances = [a for a in annotations if not a.get("iscrowd", 0)]
    records, num_images = class_statistics({**data, "categories": categories}, source, annotations=instances)
    from_json = all(k in c for c in categories for k in _COUNT_KEYS)
    return {"source": source, "counted_from": "categories" if from_json else "annotations",
            "num_annotated_images": num_images, "crowd_annotations": len(annotations) - len(instances),
            "categories": records}


def summary_lines(report: dict) -> List[str]:
    """A few lines: totals, classes per frequency group, classes per instance bin."""
    records = report["categories"]
    groups = Counter(r["frequency"] for r in records)
    bins = Counter(instance_bin(r["instance_count"]) for r in records)
    lines = [
        f"{report['source'] or 'json'}: {len(records)} classes, {sum(r['instance_count'] for r in records)} "
        f"instances, {report['num_annotated_images']} annotated images (statistics from "
        f"{report['counted_from']}; {report['crowd_annotations']} crowd annotations not counted)",
        "classes per frequency group: " + ", ".join(f"{g}={groups.get(g, 0)}" for g in FREQUENCY_GROUPS),
        "classes per instance bin: " + ", ".join(
            f"{name} [{lo}, {hi})={bins.get(name, 0)}" for name, (lo, hi) in INSTANCE_BINS.items()),
    ]
    if bins.get(None):
        lines[-1] += f", no instances={bins[None]}"
    return lines


def main(argv: Optional[List[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("annotations", help="COCO- or LVIS-format annotation json")
    parser.add_argument("--output", help="where to write the statistics json (default: stdout)")
    parser.add_argument("--from-annotations", action="store_true",
                        help="count the annotations even when the categories carry counts")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.annotations):
        parser.error(f"annotation json not found: {args.annotations}")
    with open(args.annotations) as f:
        data = json.load(f)
    report = class_stats_report(data, args.annotations, args.from_annotations)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(report, f, indent=1)
    else:
        print(json.dumps(report, indent=1))
    for line in summary_lines(report):
        print(line, file=sys.stderr if not args.output else sys.stdout)
    return report


if __name__ == "__main__":
    main()

"""detectron2 ``DatasetEvaluator`` for LVIS with lvis-api semantics, fast backends, Fixed AP,
per-class outputs, and results streamed through disk instead of gathered in memory.

Differences from detectron2's ``LVISEvaluator`` (same metrics, same percent scale):

* each process appends its results to ``{output_dir}/lvis_shards/rank_{r}.jsonl`` as it goes and
  the main process streams the shards (:mod:`lt_det.evaluation.results_io`); detectron2 pickles
  every process's predictions into the main process at once. ``output_dir`` must be visible to
  every process (true on one machine; give a shared directory across machines).
* the AP computation is a pluggable backend (:mod:`lt_det.evaluation.backends`);
* optional Fixed AP and per-class CSV/JSON/plots (:mod:`lt_det.evaluation.lvis_eval`);
* when the evaluation fails (a bad result record, a backend error), the detections are not lost:
  they are written to ``{output_dir}/lvis_detections.json``, which
  ``tools/evaluate_lvis_results.py`` evaluates again.
"""
import logging
import os
import shutil
from typing import Dict, Optional, Sequence

import torch

import detectron2.utils.comm as comm
from detectron2.data import MetadataCatalog
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.evaluation.evaluator import DatasetEvaluator

from ..data.class_stats import ClassStats, get_class_stats
from .backends import DEFAULT_BACKEND
from .lvis_eval import GroundTruthInfo, evaluate_lvis, format_metrics_table
from .results_io import ShardWriter, read_shards, write_detections

__all__ = ["LVISEvaluator", "build_lvis_evaluator", "train_class_stats", "DETECTIONS_FILE"]

logger = logging.getLogger(__name__)

DETECTIONS_FILE = "lvis_detections.json"  # where the detections of a failed evaluation are kept


class LVISEvaluator(DatasetEvaluator):
    """Evaluates ``instances`` outputs on a registered LVIS-format dataset.

    ``evaluate()`` returns ``{task: {"AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc",
    "APf"}}`` (and BAGS's "AP1" - "AP4" when training instance counts are known) in percent on the
    main process (plus ``{task}_fixed_ap`` with Fixed AP), and ``{}``
    on the others.
    """

    def __init__(
        self,
        dataset_name: str,
        output_dir: str,
        tasks: Sequence[str] = ("bbox",),
        backend: str = DEFAULT_BACKEND,
        fixed_ap_dets_per_class: Optional[int] = None,
        train_image_count: Optional[Sequence[int]] = None,
        save_per_class_results: bool = True,
        train_frequency: Optional[Sequence[str]] = None,
        train_instance_count: Optional[Sequence[int]] = None,
    ):
        """
        Args:
            dataset_name: registered with metadata ``json_file`` and
                ``thing_dataset_id_to_contiguous_id``.
            output_dir: where shards, results files, per-class tables and plots go.
            tasks: "bbox" and/or "segm".
            backend: a name in :data:`lt_det.evaluation.backends.BACKENDS`.
            fixed_ap_dets_per_class: also report Fixed AP with this many detections per category.
            train_image_count: (K,) training images per category in ascending category id
                order, for the per-class outputs; None reads the json's ``image_count``.
            save_per_class_results: write the per-class CSV/JSON/plots.
            train_frequency: (K,) the training set's r/c/f groups in ascending category id order,
                for a json whose categories have no ``frequency``.
            train_instance_count: (K,) training instances per category, same order, for BAGS's
                AP1-AP4 bins; None reads the json's ``instance_count`` (no bins without it).
        """
        meta = MetadataCatalog.get(dataset_name)
        self._json_file = meta.json_file  # read by the main process only, in evaluate()
        self._contiguous_to_lvis = {v: k for k, v in meta.thing_dataset_id_to_contiguous_id.items()}
        self._output_dir = output_dir
        self._shard_dir = os.path.join(output_dir, "lvis_shards")
        self._tasks = tuple(tasks)
        self._backend = backend
        self._fixed_ap_dets_per_class = fixed_ap_dets_per_class
        self._train_image_count = train_image_count
        self._save_per_class = save_per_class_results
        self._train_frequency = train_frequency
        self._train_instance_count = train_instance_count
        self._writer: Optional[ShardWriter] = None

    def reset(self):
        if self._writer is not None:
            self._writer.close()
        os.makedirs(self._shard_dir, exist_ok=True)
        self._writer = ShardWriter(os.path.join(self._shard_dir, f"rank_{comm.get_rank()}.jsonl"))

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            records = instances_to_coco_json(out["instances"].to(torch.device("cpu")), inp["image_id"])
            for r in records:
                r["category_id"] = self._contiguous_to_lvis[r["category_id"]]
            self._writer.write(records)

    def evaluate(self) -> Dict[str, Dict[str, float]]:
        self._writer.close()
        comm.synchronize()  # every process's shard is complete
        try:
            results = self._evaluate_shards() if comm.is_main_process() else {}
        finally:
            # also when the main process failed: the others would otherwise wait here forever
            comm.synchronize()  # no process starts its next shard before the main one removed these
        return results

    def _evaluate_shards(self) -> Dict[str, Dict[str, float]]:
        shards = [os.path.join(self._shard_dir, f"rank_{r}.jsonl") for r in range(comm.get_world_size())]
        try:
            results = evaluate_lvis(
                GroundTruthInfo.load(self._json_file, self._train_frequency),
                lambda: read_shards(shards),
                self._output_dir,
                self._tasks,
                self._backend,
                fixed_ap_dets_per_class=self._fixed_ap_dets_per_class,
                train_image_count=self._train_image_count,
                save_per_class_results=self._save_per_class,
                decode_rle=False,  # every mask was encoded by pycocotools in process()
                train_instance_count=self._train_instance_count,
            )
        except Exception:
            path = os.path.join(self._output_dir, DETECTIONS_FILE)
            write_detections(read_shards(shards), path)
            logger.error(f"LVIS evaluation failed; the detections are kept in {path}. Evaluate them with: "
                         f"python tools/evaluate_lvis_results.py {self._json_file} {path} --output-dir DIR")
            raise
        finally:
            shutil.rmtree(self._shard_dir)
        logger.info("LVIS evaluation results (%):\n" + format_metrics_table(results))
        return results


def train_class_stats(train_datasets: Sequence[str], num_categories: int) -> Optional[ClassStats]:
    """The training datasets' class statistics, for the per-class outputs and the frequency groups
    of an evaluation json without them; None when there are no training datasets or they are
    registered without statistics (the evaluation json's own then serve)."""
    if len(train_datasets) == 0:
        return None
    try:
        stats = get_class_stats(list(train_datasets))
    except KeyError as e:
        logger.info(f"The evaluation uses the evaluation json's image_count and frequency: {e}")
        return None
    if stats.num_classes != num_categories:
        raise ValueError(f"Training datasets {list(train_datasets)} have {stats.num_classes} classes, the evaluated "
                         f"one {num_categories}")
    return stats


def build_lvis_evaluator(cfg, dataset_name: str, output_dir: Optional[str] = None) -> LVISEvaluator:
    """The LVIS evaluator configured by ``cfg.TEST.LVIS_EVAL`` (see :mod:`lt_det.evaluation.config`).

    ``output_dir`` defaults to ``cfg.OUTPUT_DIR/inference/{dataset_name}``.
    """
    if output_dir is None:
        output_dir = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
    ev = cfg.TEST.LVIS_EVAL
    stats = train_class_stats(cfg.DATASETS.TRAIN, len(MetadataCatalog.get(dataset_name).thing_classes))
    return LVISEvaluator(
        dataset_name,
        output_dir,
        tasks=("bbox", "segm") if cfg.MODEL.MASK_ON else ("bbox",),
        backend=ev.BACKEND,
        fixed_ap_dets_per_class=ev.FIXED_AP.DETS_PER_CLASS if ev.FIXED_AP.ENABLED else None,
        train_image_count=None if stats is None else stats.image_count.tolist(),
        save_per_class_results=ev.PER_CLASS,
        train_frequency=None if stats is None else stats.frequency.tolist(),
        train_instance_count=None if stats is None else stats.instance_count.tolist(),
    )

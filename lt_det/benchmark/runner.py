"""Runs the benchmark's cells in order and collects their results.

Order: the backbone pretraining cell, then for each seed every stage-1 method, then the second
stages and post-hoc methods of that seed (a killed run has whole seeds of the table done first).
Cells run one at a time: on a 2-core machine two training processes at once are 5-10x slower
than one.
"""
import dataclasses
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from detectron2.config import get_cfg

from ..config import add_lt_det_config
from ..data import get_class_stats
from ..data.synthetic import GENERATOR_VERSION, SyntheticLTConfig
from ..losses import build_loss
from ..modeling.tau_norm import class_weight_norms
from . import data as bdata
from .cells import REPO, Cell, RunFailed, cell_key, config_identity, default_config, flatten_metrics, run_logged
from .methods import Method, select
from .scaling import scaled_thresholds

logger = logging.getLogger("lt_det.benchmark")

RECIPE = os.path.join(REPO, "configs", "benchmark", "Base-benchmark.yaml")
PRETRAIN_RECIPE = os.path.join(REPO, "configs", "benchmark", "pretrain.yaml")
TRAIN_SPLIT = f"{bdata.BENCH_NAME}_train"


@dataclass(frozen=True)
class Profile:
    """A benchmark run's size: seeds, schedule and data (the method list is separate)."""

    name: str
    seeds: Tuple[int, ...]
    iters: int  # stage-1 MAX_ITER; steps at 75% / 90%, stage 2 scaled from it
    pretrain_iters: int
    methods: Optional[Tuple[str, ...]] = None  # None: every method of the list
    bench_data: SyntheticLTConfig = bdata.BENCH_DATA
    pretrain_data: SyntheticLTConfig = bdata.PRETRAIN_DATA
    overrides: Dict[str, object] = field(default_factory=dict)  # every cell, pretraining too (tests: tiny runs)
    method_overrides: Dict[str, object] = field(default_factory=dict)  # method cells only (recipe trials)


def _schedule(iters: int, steps: Sequence[float], warmup: int) -> Dict[str, object]:
    # detectron2's scheduler needs 0 < step < MAX_ITER (a very short test schedule has none)
    steps = tuple(sorted({int(round(s * iters)) for s in steps} & set(range(1, iters))))
    return {"SOLVER.MAX_ITER": iters, "SOLVER.STEPS": steps,
            "SOLVER.WARMUP_ITERS": min(warmup, max(iters // 5, 1)),
            "SOLVER.CHECKPOINT_PERIOD": max(iters // 4, 1)}


class BenchmarkRunner:
    def __init__(self, profile: Profile, methods: Dict[str, Method], cache_dir: str, data_root: str,
                 cached_only: bool = False):
        """``cached_only``: train nothing; cells not finished yet are reported as "pending"."""
        self.profile, self.methods, self.cache_dir, self.data_root = profile, methods, cache_dir, data_root
        self.cached_only = cached_only
        os.makedirs(cache_dir, exist_ok=True)
        bdata.ensure_benchmark_datasets(data_root, profile.bench_data, profile.pretrain_data)
        self.stats = get_class_stats(TRAIN_SPLIT)
        self.thresholds = scaled_thresholds(self.stats.image_count.tolist(), self.stats.instance_count.tolist(),
                                            self.stats.num_images)
        self.data_key = {"bench": dataclasses.asdict(profile.bench_data),
                         "pretrain": dataclasses.asdict(profile.pretrain_data), "version": GENERATOR_VERSION}
        self.env = {"DETECTRON2_DATASETS": data_root}
        self.defaults = default_config()

    # -- configs ---------------------------------------------------------------------------
    def _cfg(self, recipe: str, overrides: Dict[str, object], method_cell: bool = True):
        cfg = get_cfg()
        add_lt_det_config(cfg)
        cfg.merge_from_file(recipe)
        pairs = []
        profile = {**self.profile.overrides, **(self.profile.method_overrides if method_cell else {})}
        for key, value in {**overrides, **profile}.items():
            if value == "RFS_T_EQL":
                value = self.thresholds["RFS_T_EQL"]
            pairs += [key, value]
        cfg.merge_from_list(pairs)
        if not torch.cuda.is_available():
            cfg.MODEL.DEVICE = "cpu"
        return cfg

    def _common(self, seed: int) -> Dict[str, object]:
        scaled = {k: v for k, v in self.thresholds.items() if k != "RFS_T_EQL"}
        return {**scaled, "SEED": seed, "DIAGNOSTICS.LOGIT_GRAD_STATS": True}

    def stage1_cfg(self, method: Method, seed: int):
        p = self.profile
        return self._cfg(RECIPE, {**self._common(seed), **_schedule(p.iters, (0.75, 0.9), 50), **method.config})

    def stage2_cfg(self, method: Method, seed: int):
        source = self.methods[method.source]
        length, s1, s2 = method.schedule
        iters = max(int(round(length * self.profile.iters)), 1)
        return self._cfg(RECIPE, {**self._common(seed), **source.config, **_schedule(iters, (s1, s2), 10),
                                  **method.config})

    # -- cells -----------------------------------------------------------------------------
    def _pretrain_cell(self) -> Tuple[Cell, object]:
        cfg = self._cfg(PRETRAIN_RECIPE, {**_schedule(self.profile.pretrain_iters, (0.75, 0.9), 100), "SEED": 0},
                        method_cell=False)
        return Cell(self.cache_dir, "pretrain", cell_key("pretrain", config_identity(cfg, self.defaults), self.data_key)), cfg

    def pretrain(self) -> str:
        """The pretrained backbone's path; trains it first if it is not in the cache (only when a
        stage-1 cell is about to train: a run of cached cells needs no backbone)."""
        cell, cfg = self._pretrain_cell()
        backbone = os.path.join(cell.dir, "backbone.pth")
        if cell.result() is None or not os.path.isfile(backbone):
            cfg.OUTPUT_DIR = cell.dir
            logger.info(f"pretraining the backbone: {cell.dir}")
            seconds = self._train(cell, cfg)
            state = torch.load(os.path.join(cell.dir, "model_final.pth"), map_location="cpu")["model"]
            # detectron2's ImageNet weights are the ResNet alone: keep the bottom-up part only.
            kept = {k: v for k, v in state.items() if k.startswith("backbone.bottom_up.")}
            torch.save({"model": kept, "__author__": "lt_det benchmark pretraining"}, backbone)
            self._clean(cell.dir, keep=("backbone.pth",))
            cell.write_result({"status": "ok", "seconds": seconds})
        return backbone

    def run_method(self, method: Method, seed: int, done: Dict[Tuple[str, int], Dict]) -> Dict:
        if method.stage == "1":
            cfg = self.stage1_cfg(method, seed)
            deps, weights = [self._pretrain_cell()[0].key], None  # the backbone: only if it trains
        else:
            source = done[(method.source, seed)]
            if source["status"] == "pending":
                return {"status": "pending", "method": method.name, "seed": seed}
            if source["status"] != "ok":
                return {"status": "skipped", "method": method.name, "seed": seed,
                        "reason": f"its stage 1 ({method.source}) is {source['status']}"}
            cfg = self.stage2_cfg(method, seed) if method.stage == "2" else self.stage1_cfg(self.methods[method.source], seed)
            source_cell = Cell(self.cache_dir, source["label"], source["key"])
            deps, weights = [source["key"]], os.path.join(source_cell.dir, "model_final.pth")
        kind = {"1": "train", "2": "train", "posthoc": "calibration"}[method.stage]
        extra = {"calibration": method.calibration, "values": list(method.values)} if method.calibration else {}
        key = cell_key(kind, config_identity(cfg, self.defaults), {**self.data_key, **extra}, deps)
        cell = Cell(self.cache_dir, f"{method.name}-seed{seed}", key)
        cached = cell.result()
        if cached is not None:
            return cached
        if self.cached_only:
            return {"status": "pending", "method": method.name, "seed": seed}
        if weights is not None and not os.path.isfile(weights):
            # its stage-1 result was imported (import_results) without the model: train it again
            logger.info(f"{method.source} seed {seed}: no model in the cache; training it again for {method.name}")
            os.remove(source_cell.result_path)
            done[(method.source, seed)] = self.run_method(self.methods[method.source], seed, done)
            return self.run_method(method, seed, done)
        cfg.MODEL.WEIGHTS = weights or self.pretrain()
        cfg.OUTPUT_DIR = cell.dir
        logger.info(f"{method.name} seed {seed}: {cell.dir}")
        try:
            if kind == "train":
                seconds = self._train(cell, cfg)
                weights_out = os.path.join(cell.dir, "model_final.pth")
            else:
                seconds, weights_out = self._calibrate(cell, cfg, weights, method)
        except RunFailed as e:
            if not e.diverged:
                logger.error(f"{method.name} seed {seed} failed: {e}")
                return {"status": "failed", "method": method.name, "seed": seed,
                        "log": os.path.relpath(e.log, self.cache_dir)}
            logger.warning(f"{method.name} seed {seed} diverged (non-finite loss); log: {e.log}")
            self._clean(cell.dir, keep=("log.txt", "run.log", "config.yaml"))
            return cell.write_result({"status": "diverged", "method": method.name, "seed": seed,
                                      "log": os.path.relpath(e.log, self.cache_dir),
                                      "dir": os.path.relpath(cell.dir, self.cache_dir)})
        result = {"status": "ok", "method": method.name, "seed": seed, "seconds": seconds,
                  "dir": os.path.relpath(cell.dir, self.cache_dir),
                  **self._collect(cell, cfg, weights_out)}
        needed = any(m.source == method.name for m in self.methods.values())
        self._clean(cell.dir, keep=("model_final.pth",) if needed else ())
        return cell.write_result(result)

    def run(self) -> List[Dict]:
        """Every cell of the profile; returns their results (finished, diverged, failed, skipped)."""
        methods = select(self.methods, self.profile.methods or list(self.methods))
        done: Dict[Tuple[str, int], Dict] = {}
        for seed in self.profile.seeds:
            for method in methods:
                done[(method.name, seed)] = self.run_method(method, seed, done)
        return list(done.values())

    # -- running ---------------------------------------------------------------------------
    def _train(self, cell: Cell, cfg) -> float:
        config = cell.write_config(cfg)
        return run_logged(["train_net.py", "--config-file", config, "--resume"], os.path.join(cell.dir, "run.log"),
                          self.env)

    def _calibrate(self, cell: Cell, cfg, weights: str, method: Method) -> Tuple[float, str]:
        """The calibration's value chosen on the held-out split by bbox AP (tools/calibration_sweep.py),
        then the model evaluated with it on DATASETS.TEST."""
        config = cell.write_config(cfg)
        log, chosen = os.path.join(cell.dir, "run.log"), os.path.join(cell.dir, "chosen.yaml")
        seconds = run_logged(["tools/calibration_sweep.py", "--config-file", config, "--weights", weights,
                              "--method", method.calibration, "--values", *map(str, method.values),
                              "--tune-dataset", bdata.HELDOUT_SPLIT, "--metric", "bbox/AP", "--output-config", chosen,
                              "OUTPUT_DIR", os.path.join(cell.dir, "sweep")], log, self.env)
        seconds += run_logged(["train_net.py", "--config-file", chosen, "--eval-only", "OUTPUT_DIR", cell.dir],
                              log, self.env)
        return seconds, weights

    def _collect(self, cell: Cell, cfg, weights: str) -> Dict:
        """What the table and plots read from a finished cell (small, kept in result.json)."""
        with open(os.path.join(cell.dir, "metrics_eval.json")) as f:
            out = {"metrics": flatten_metrics(json.load(f))}
        per_class = os.path.join(cell.dir, "inference", cfg.DATASETS.TEST[0], "lvis_per_class.json")
        if os.path.isfile(per_class):
            with open(per_class) as f:
                out["per_class"] = json.load(f)
        grad_stats = os.path.join(cell.dir, "logit_grad_stats.json")
        if os.path.isfile(grad_stats):
            with open(grad_stats) as f:
                out["logit_grad_stats"] = json.load(f)
        norms = classifier_norms(cfg, torch.load(weights, map_location="cpu")["model"], self.stats)
        sweep = os.path.join(cell.dir, "sweep", "calibration_sweep", "calibration_sweep.json")
        if os.path.isfile(sweep):
            with open(sweep) as f:
                out["calibration_sweep"] = json.load(f)
            if out["calibration_sweep"]["method"] == "tau_norm":  # ||w / ||w||^τ|| = ||w||^(1 - τ)
                norms = [n ** (1.0 - out["calibration_sweep"]["best"]) for n in norms]
        out["classifier_norms"] = norms
        return out

    @staticmethod
    def _clean(folder: str, keep: Sequence[str] = ()) -> None:
        """Removes checkpoints (and the inference folder's large files) once a cell is finished."""
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            if name in keep:
                continue
            if name.endswith(".pth") or name == "last_checkpoint" or name == "inference" or name == "sweep":
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def import_results(cache_dir: str, results: List[Dict]) -> int:
    """Puts finished cells' results (a ``cells.json`` of an earlier run, on any machine) into
    ``cache_dir``, so a run continues from them; a cell is reused only where its key, computed
    from its config here, matches. Returns the number imported."""
    count = 0
    for r in results:
        if r.get("status") not in ("ok", "diverged") or "key" not in r:
            continue
        cell = Cell(cache_dir, r["label"], r["key"])
        if cell.result() is None:
            os.makedirs(cell.dir, exist_ok=True)
            result = {k: v for k, v in r.items() if k not in ("key", "label")}
            if "dir" in result:  # the folder in this cache, whatever it was called where the cell ran
                result["dir"] = os.path.relpath(cell.dir, cache_dir)
            cell.write_result(result)
            count += 1
    return count


def classifier_norms(cfg, state_dict: Dict[str, torch.Tensor], stats) -> List[float]:
    """(K,) each class's effective classifier weight norm (``||w_c||``, times LWS's ``|s_c|``)."""
    norms = class_weight_norms(state_dict, build_loss(cfg, stats).classifier_rows())
    return [float(v) if math.isfinite(v) else math.nan for v in norms.tolist()]

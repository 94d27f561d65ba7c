"""The benchmark end to end on a tiny set: every kind of cell runs, a diverging cell is marked and
the rest of the table completes, a re-run trains nothing finished, a killed cell alone re-runs."""
import importlib.util
import json
import os

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from lt_det.benchmark import runner as runner_module
from lt_det.benchmark.data import BENCH_NAME, PRETRAIN_NAME, register_benchmark_datasets
from lt_det.benchmark.runner import Profile
from lt_det.data.synthetic import SyntheticLTConfig
from tiny_dataset import REPO

METHODS = """
softmax_ce: {stage: 1, config: {MODEL.LT_LOSS.NAME: softmax_ce}}
rfs: {stage: 1, baseline: softmax_ce, rfs: true,
      config: {MODEL.LT_LOSS.NAME: softmax_ce, DATALOADER.SAMPLER_TRAIN: RepeatFactorTrainingSampler}}
exploding: {stage: 1, baseline: softmax_ce,
            config: {SOLVER.BASE_LR: 1.0e+30, SOLVER.CLIP_GRADIENTS.ENABLED: false}}
cRT: {stage: 2, from: softmax_ce, schedule: [1.0, 0.5, 0.8],
      config: {DECOUPLED.ENABLED: true, DECOUPLED.TRAINABLE: ["roi_heads.box_predictor.cls_score"],
               DECOUPLED.CLASSIFIER_INIT: reinit, DATALOADER.SAMPLER_TRAIN: ClassAwareSampler}}
tau_norm: {stage: posthoc, from: softmax_ce, calibration: tau_norm, values: [0.0, 1.0]}
after_diverged: {stage: 2, from: exploding, schedule: [1.0, 0.5, 0.8], config: {DECOUPLED.ENABLED: true}}
"""
TINY_PROFILE = Profile(
    "tiny", seeds=(0,), iters=3, pretrain_iters=2,
    bench_data=SyntheticLTConfig(num_classes=12, max_images_per_class=40, val_instances_per_class=2,
                                 heldout_instances_per_class=1),
    pretrain_data=SyntheticLTConfig(num_classes=12, palette="pretrain", profile="uniform", max_images_per_class=4,
                                    val_instances_per_class=0, seed=1),
    overrides={"MODEL.ROI_HEADS.NUM_CLASSES": 12, "SOLVER.IMS_PER_BATCH": 2, "DATALOADER.NUM_WORKERS": 0,
               "TEST.DETECTIONS_PER_IMAGE": 20},
)


def _load_tool():
    spec = importlib.util.spec_from_file_location("benchmark_tool", os.path.join(REPO, "tools", "benchmark.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def bench_root(tmp_path, monkeypatch):
    """The benchmark's dataset names pointed at a fresh folder (generated there by the runner)."""
    root = tmp_path / "datasets"
    names = [f"{BENCH_NAME}_{s}" for s in ("train", "val", "heldout")] + [f"{PRETRAIN_NAME}_train"]

    def reregister():
        for name in names:
            if name in DatasetCatalog.list():
                DatasetCatalog.remove(name)
                MetadataCatalog.remove(name)

    reregister()
    register_benchmark_datasets(str(root))
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    yield root
    reregister()
    register_benchmark_datasets(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")))


def test_tiny_benchmark(bench_root, tmp_path, monkeypatch):
    tool = _load_tool()
    methods_file = tmp_path / "methods.yaml"
    methods_file.write_text(METHODS)
    cache, out = tmp_path / "cells", tmp_path / "out"
    argv = ["--profile", "tiny", "--methods-file", str(methods_file), "--cache", str(cache), "--output", str(out)]
    first = tool.main(argv, profiles={"tiny": TINY_PROFILE})

    status = {r["method"]: r["status"] for r in first["results"]}
    assert status == {"softmax_ce": "ok", "rfs": "ok", "exploding": "diverged", "cRT": "ok", "tau_norm": "ok",
                      "after_diverged": "skipped"}
    by_method = {r["method"]: r for r in first["results"]}
    assert os.path.isfile(cache / by_method["exploding"]["log"])
    assert "FloatingPointError" in (cache / by_method["exploding"]["log"]).read_text()
    tau = by_method["tau_norm"]
    assert tau["calibration_sweep"]["dataset"] == f"{BENCH_NAME}_heldout" and len(tau["calibration_sweep"]["table"]) == 2
    assert tau["calibration_sweep"]["method"] == "tau_norm" and tau["calibration_sweep"]["key"] == "TAU"
    for r in (by_method["softmax_ce"], by_method["cRT"]):
        assert set(r["metrics"]) >= {"bbox/AP", "bbox/APr", "bbox/APc", "bbox/APf"}
        assert len(r["classifier_norms"]) == 12 and len(r["per_class"]) == 12
    assert by_method["softmax_ce"]["logit_grad_stats"]["iterations"] == 3
    # stage 2 kept its stage-1 model only where a later method needs it
    assert os.path.isfile(cache / by_method["softmax_ce"]["dir"] / "model_final.pth")
    assert not os.path.exists(cache / by_method["rfs"]["dir"] / "model_final.pth")

    md = (out / "table.md").read_text()
    assert "| exploding |" in md and "diverged 1" in md
    rows = json.loads((out / "table.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["softmax_ce", "rfs", "exploding", "cRT", "tau_norm", "after_diverged"]
    for png in ("ap_by_group", "ap_vs_image_count", "classifier_norms", "logit_grad_ratio"):
        assert (out / f"{png}.png").stat().st_size > 0

    # a re-run trains nothing
    calls = []
    real = runner_module.run_logged
    monkeypatch.setattr(runner_module, "run_logged", lambda args, *a, **k: calls.append(args) or real(args, *a, **k))
    again = tool.main(argv, profiles={"tiny": TINY_PROFILE})
    assert calls == []
    assert [r["metrics"] for r in again["results"] if r["status"] == "ok"] == \
        [r["metrics"] for r in first["results"] if r["status"] == "ok"]

    # a cell killed before its result was written re-runs, alone
    os.remove(cache / by_method["cRT"]["dir"] / "result.json")
    tool.main(argv, profiles={"tiny": TINY_PROFILE})
    assert len(calls) == 1 and calls[0][0] == "train_net.py" and by_method["cRT"]["dir"] in calls[0][2]

    # another machine: the committed cells.json imported into an empty cache; nothing finished
    # re-trains, and a second stage whose stage-1 model is not there trains that stage 1 again
    # (and, first, the backbone it starts from, which is not committed either)
    cells = json.loads((out / "cells.json").read_text())
    cells = [c for c in cells if c["method"] != "cRT"]
    for c in cells:  # a folder name from another cache (e.g. one re-keyed since): not used
        if "dir" in c:
            c["dir"] = f"elsewhere/{c['dir']}"
    (tmp_path / "cells_without_cRT.json").write_text(json.dumps(cells))
    calls.clear()
    tool.main(["--profile", "tiny", "--methods-file", str(methods_file), "--cache", str(tmp_path / "cells2"),
               "--output", str(tmp_path / "out2"), "--import-cells", str(tmp_path / "cells_without_cRT.json")],
              profiles={"tiny": TINY_PROFILE})
    assert [c[2].split("/")[-2].split("-")[0] for c in calls] == ["pretrain", "softmax_ce", "cRT"]

"""The benchmark's method list: every registered loss has a row, bad entries say what is wrong."""
import pytest

from lt_det.benchmark.methods import load_methods, select
from lt_det.losses import get_loss_class, list_losses


def test_every_registered_loss_is_benchmarked():
    """A loss added to lt_det's registry must join the table (an entry in methods.yaml); losses
    other tests register from outside lt_det are not lt_det's."""
    methods = load_methods()
    used = {m.config.get("MODEL.LT_LOSS.NAME") for m in methods.values()}
    ours = {n for n in list_losses() if get_loss_class(n).__module__.startswith("lt_det.")}
    assert len(ours) >= 15 and ours <= used, f"losses with no benchmark entry: {sorted(ours - used)}"


def test_stage2_methods_start_from_stage1_and_have_schedules():
    methods = load_methods()
    for m in methods.values():
        if m.stage == "1":
            assert m.source is None and m.schedule is None
        else:
            assert methods[m.source].stage == "1"
            assert m.baseline == m.source  # compared with the model it starts from
    assert methods["tau_norm"].values and methods["tau_norm"].calibration == "tau_norm" and methods["cRT"].schedule


def test_every_registered_calibration_is_benchmarked():
    from lt_det.calibration import list_calibrations

    used = {m.calibration for m in load_methods().values() if m.stage == "posthoc"}
    assert set(list_calibrations()) <= used, f"calibrations with no benchmark entry: {set(list_calibrations()) - used}"


def test_select_adds_sources_first_and_rejects_unknown_names():
    methods = load_methods()
    chosen = [m.name for m in select(methods, ["cRT", "eql"])]
    assert chosen == ["softmax_ce", "eql", "cRT"]  # stage 1 first, list order
    with pytest.raises(KeyError, match="Valid methods: softmax_ce, sigmoid_ce"):
        select(methods, ["softmax", "eql"])


@pytest.mark.parametrize("entry,message", [
    ("a: {stage: 3}", "stage must be one of"),
    ("a: {stage: 2, schedule: [0.2, 0.5, 0.8]}", "needs `from`"),
    ("a: {stage: 1}\nb: {stage: 2, from: a}", "needs `schedule"),
    ("a: {stage: 1, colour: red}", "unknown fields"),
    ("a: {stage: 1, baseline: z}", "baseline 'z' is not in"),
    ("a: {stage: 1}\nb: {stage: posthoc, from: a, values: [1.0]}", "needs `calibration`"),
    ("a: {stage: 1}\nb: {stage: 2, from: a, schedule: [1, 0.5, 0.8]}\nc: {stage: 2, from: b, schedule: [1, 0.5, 0.8]}",
     "must be a stage-1 method"),
])
def test_bad_entries(tmp_path, entry, message):
    path = tmp_path / "methods.yaml"
    path.write_text(entry)
    with pytest.raises(ValueError, match=message):
        load_methods(str(path))


@pytest.mark.parametrize("name", [n for n, m in load_methods().items() if m.stage == "2"])
def test_second_stage_loads_its_stage1_model(name, tiny_dataset_root, tmp_path):
    """The stage-2 config, built as the runner builds it, takes its stage-1 method's checkpoint
    (same classifier layout where it keeps the classifier)."""
    import torch
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from lt_det.benchmark.runner import RECIPE
    from lt_det.benchmark.scaling import scaled_thresholds
    from lt_det.config import add_lt_det_config
    from lt_det.data import get_class_stats
    from lt_det.engine import Trainer
    from tiny_dataset import TINY_NUM_CLASSES

    stats = get_class_stats("synthetic_lt_train")
    scaled = scaled_thresholds(stats.image_count.tolist(), stats.instance_count.tolist(), stats.num_images)

    def cfg_of(*configs):
        cfg = get_cfg()
        add_lt_det_config(cfg)
        cfg.merge_from_file(RECIPE)
        pairs = []
        for key, value in {k: v for c in configs for k, v in c.items()}.items():
            pairs += [key, scaled["RFS_T_EQL"] if value == "RFS_T_EQL" else value]
        cfg.merge_from_list(pairs + ["MODEL.DEVICE", "cpu", "DATASETS.TRAIN", ("synthetic_lt_train",),
                                     "MODEL.ROI_HEADS.NUM_CLASSES", TINY_NUM_CLASSES,
                                     "MODEL.LT_LOSS.BAGS.BIN_EDGES", scaled["MODEL.LT_LOSS.BAGS.BIN_EDGES"]])
        return cfg

    methods = load_methods()
    method, source = methods[name], methods[methods[name].source]
    stage1 = build_model(cfg_of(source.config))
    weights = tmp_path / "model_final.pth"
    torch.save({"model": stage1.state_dict()}, weights)
    cfg = cfg_of(source.config, method.config)
    cfg.MODEL.WEIGHTS = str(weights)
    cfg.OUTPUT_DIR = str(tmp_path / "stage2")
    trainer_model = Trainer.build_model(cfg)
    from lt_det.engine.decoupled import load_stage1_weights

    load_stage1_weights(trainer_model, cfg)  # raises on a layout mismatch

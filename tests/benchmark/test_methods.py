"""The benchmark's method list: every registered loss has a row, bad entries say what is wrong."""
import pytest

from lt_det.benchmark.methods import load_methods, select
from lt_det.losses import list_losses


def test_every_registered_loss_is_benchmarked():
    """A loss added to the registry must join the table (an entry in methods.yaml)."""
    methods = load_methods()
    used = {m.config.get("MODEL.LT_LOSS.NAME") for m in methods.values()}
    assert set(list_losses()) <= used, f"losses with no benchmark entry: {sorted(set(list_losses()) - used)}"


def test_stage2_methods_start_from_stage1_and_have_schedules():
    methods = load_methods()
    for m in methods.values():
        if m.stage == "1":
            assert m.source is None and m.schedule is None
        else:
            assert methods[m.source].stage == "1"
            assert m.baseline == m.source  # compared with the model it starts from
    assert methods["tau_norm"].taus and methods["cRT"].schedule


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
    ("a: {stage: 1}\nb: {stage: 2, from: a, schedule: [1, 0.5, 0.8]}\nc: {stage: 2, from: b, schedule: [1, 0.5, 0.8]}",
     "must be a stage-1 method"),
])
def test_bad_entries(tmp_path, entry, message):
    path = tmp_path / "methods.yaml"
    path.write_text(entry)
    with pytest.raises(ValueError, match=message):
        load_methods(str(path))

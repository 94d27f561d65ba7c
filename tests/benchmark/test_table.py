"""The table: mean ± std over seeds, differences against the baseline, diverged cells marked."""
import json
import math

import pytest

from lt_det.benchmark.methods import Method
from lt_det.benchmark.table import summarize, to_json, to_markdown

METHODS = {
    "base": Method("base", "1"),
    "better": Method("better", "1", baseline="base", rfs=True),
    "same": Method("same", "1", baseline="base"),
    "broken": Method("broken", "1", baseline="base"),
}


def _cell(method, seed, ap, apr, seconds=60.0):
    return {"method": method, "seed": seed, "status": "ok", "seconds": seconds,
            "metrics": {"bbox/AP": ap, "bbox/APr": apr, "bbox/APc": ap, "bbox/APf": ap}}


def _results():
    return [
        _cell("base", 0, 20.0, 1.0), _cell("base", 1, 22.0, 3.0), _cell("base", 2, 24.0, 2.0),
        _cell("better", 0, 21.0, 9.0), _cell("better", 1, 23.0, 10.0), _cell("better", 2, 22.0, 11.0),
        _cell("same", 0, 21.0, 2.0), _cell("same", 1, 23.0, 3.0), _cell("same", 2, 25.0, 1.0),
        _cell("broken", 0, 20.0, 1.0),
        {"method": "broken", "seed": 1, "status": "diverged", "log": "broken-seed1-x/run.log"},
    ]


def test_mean_std_and_deltas():
    rows = {r["method"]: r for r in summarize(METHODS, _results())}
    base, better, same = rows["base"], rows["better"], rows["same"]
    # base AP 20, 22, 24: mean 22, sample std 2; APr 1, 3, 2: mean 2, std 1
    assert base["AP"] == {"mean": 22.0, "std": pytest.approx(2.0), "n": 3}
    assert base["APr"]["std"] == pytest.approx(1.0)
    # better APr 9, 10, 11: mean 10, std 1 -> +8 against a spread of 1 + 1: exceeds
    assert better["delta_APr"] == {"delta": pytest.approx(8.0), "spread": pytest.approx(2.0), "exceeds_spread": True,
                                   "seeds": [0, 1, 2]}
    # better AP 21, 23, 22: mean 22 -> +0 against 1 + 2
    assert better["delta_AP"]["exceeds_spread"] is False
    assert better["verdict"] == "raises APr"
    # same APr 2, 3, 1: +0 -> not beyond the spread
    assert same["delta_APr"]["delta"] == pytest.approx(0.0) and same["verdict"] == "no change beyond the seeds' spread"
    assert base["verdict"] == "baseline" and base["minutes"] == pytest.approx(1.0)


def test_diverged_cell_is_marked_with_its_log_and_the_rest_completes():
    rows = {r["method"]: r for r in summarize(METHODS, _results())}
    broken = rows["broken"]
    assert broken["status"]["diverged"] == 1 and broken["finished"] == 1
    assert broken["logs"] == ["broken-seed1-x/run.log"]
    assert math.isnan(broken["AP"]["std"])  # one finished seed: no spread
    md = to_markdown(list(rows.values()))
    line = next(l for l in md.splitlines() if l.startswith("| broken "))
    assert "diverged 1: broken-seed1-x/run.log" in line
    assert len([l for l in md.splitlines() if l.startswith("| ")]) == 1 + 4  # the header and 4 methods
    assert json.loads(to_json(list(rows.values()), {"seeds": [0, 1, 2]}))["meta"] == {"seeds": [0, 1, 2]}


def test_markdown_row_format():
    rows = summarize(METHODS, _results())
    better = next(l for l in to_markdown(rows).splitlines() if l.startswith("| better "))
    assert better.startswith("| better | 1 | yes | 3 | 22.0 ± 1.0 | 10.0 ± 1.0 |")
    assert "| +0.0 | +8.0 * | base |" in better


def test_delta_uses_the_seeds_both_finished():
    # "broken" finished seed 0 only (AP 20): compared with base's seed 0 (20), not base's mean (22)
    rows = {r["method"]: r for r in summarize(METHODS, _results())}
    assert rows["broken"]["delta_AP"]["delta"] == pytest.approx(0.0) and rows["broken"]["delta_AP"]["seeds"] == [0]
    assert math.isnan(rows["broken"]["delta_AP"]["spread"])

"""tools/gpu_check.py in its tiny CPU mode: every part runs, and the report says the fused and
reference paths agree (the GPU run is the same code at LVIS scale)."""
import json
import os
import subprocess
import sys

from tiny_dataset import REPO


def test_tiny_gpu_check_runs_and_agrees(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools/gpu_check.py"), "--tiny", "--device", "cpu",
                           "--output", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["failed"] == [] and report["compile_failures"] == {}
    assert set(report["agreement"]) == {"sigmoid_ce", "droploss", "seesaw"}
    assert report["softmax_ce"]["fp32"] > 0 and report["softmax_ce"]["bf16"] > 0
    for label, times in report["speed"].items():
        assert times["fp32"]["fused"] > 0 and times["bf16"]["reference"] > 0
    assert all(len(t["reference"]) == 2 and t["max_rel_diff"] <= 1e-5 for t in report["training"].values())

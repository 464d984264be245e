"""benchmarks/call_overhead.py end to end on the smallest model: both runtimes timed in their own processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.tvm

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "call_overhead.py"


def test_call_overhead_benchmark_writes_its_table(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--models", "mlp", "--calls", "30", "--rounds", "2",
                           "--work", str(tmp_path / "work"), "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [row] = json.loads((out / "call_overhead.json").read_text())["models"]
    assert row["model"] == "mlp" and len(row["rounds"]["loader"]) == len(row["rounds"]["onnxruntime"]) == 2
    for key in ("call_us", "kernels_us", "copying_us", "onnxruntime_run_us", "onnxruntime_iobinding_us"):
        assert row[key] > 0, key
    assert row["loader_overhead_us"] == pytest.approx(row["call_us"] - row["kernels_us"], abs=0.02)
    assert row["call_vs_onnxruntime"] == pytest.approx(row["call_us"] / row["onnxruntime_run_us"], rel=1e-2)
    assert "| mlp |" in proc.stdout

"""benchmarks/tuning.py end to end on the smallest budget: tuning, the thread choice, the timing harness, the table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.tvm, pytest.mark.tuning]

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "tuning.py"


def test_tuning_benchmark_runs_and_writes_its_table(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--models", "mlp", "--trials-per-task", "2", "--rounds", "1",
                           "--repeat", "3", "--out", str(out), "--work", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((out / "tuning.json").read_text())
    [row] = doc["models"]
    assert row["model"] == "mlp" and row["tasks"] == 3 and row["trials"] >= 6
    assert row["tuned_threads"] in range(1, doc["threads"] + 1)
    assert row["tuned_ms"] > 0 and row["untuned_ms"] > 0 and row["onnxruntime_ms"] > 0
    # one round: the paired speed-up is that round's ratio, and the medians are that round's times
    [tuned], [onnxruntime] = row["rounds_ms"]["tuned"], row["rounds_ms"]["onnxruntime"]
    assert row["tuned_ms"] == pytest.approx(tuned, abs=1e-4)
    assert row["speedup_vs_onnxruntime"] == pytest.approx(onnxruntime / tuned, rel=1e-3)
    assert (out / "tuning.md").read_text().count("| mlp | 3 |") == 1
    assert (tmp_path / "work" / "tuning").is_dir()  # --work keeps the store

    # --retime: the kept packages timed again; the tuning columns stay as measured
    proc = subprocess.run([sys.executable, str(SCRIPT), "--models", "mlp", "--trials-per-task", "2", "--rounds", "2",
                           "--repeat", "3", "--out", str(out), "--work", str(tmp_path / "work"), "--retime"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads((out / "tuning.json").read_text())
    [retimed] = again["models"]
    assert again["retimed"] is True and len(retimed["rounds_ms"]["tuned"]) == 2
    assert {k: retimed[k] for k in ("trials", "tune_s", "tasks", "history")} == \
        {k: row[k] for k in ("trials", "tune_s", "tasks", "history")}


def test_paired_speedup_is_the_median_of_each_rounds_ratio():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import tuning as bench
    finally:
        sys.path.remove(str(SCRIPT.parent))
    # a slow spell in the middle round slows both sides: the per-round ratios stay at 2
    assert bench.paired_speedup([2.0, 8.0, 2.2], [1.0, 4.0, 1.1]) == pytest.approx(2.0)
    assert bench.paired_speedup([1.0, 3.0, 5.0], [1.0, 1.0, 1.0]) == 3.0
    with pytest.raises(ValueError):
        bench.paired_speedup([1.0, 2.0], [1.0])

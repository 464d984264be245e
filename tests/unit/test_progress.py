"""Tuning progress: the live line and the convergence history (no TVM)."""

from __future__ import annotations

import io
import json

from ansor_build.backend.tune import TaskProgress, TuneResult
from ansor_build.tuning.progress import Progress, estimated_us


def _result():
    return TuneResult([TaskProgress("a" * 16, "fused_conv2d", weight=2, budget=64, default_us=100.0),
                       TaskProgress("b" * 16, "fused_matmul", weight=1, budget=64, default_us=10.0)])


def test_estimate_uses_best_records_and_default_code_until_a_task_has_records():
    result = _result()
    assert estimated_us(result.tasks) == 2 * 100.0 + 10.0
    result.tasks[0].best_us = 40.0
    assert estimated_us(result.tasks) == 2 * 40.0 + 10.0
    result.tasks[1].best_us = 12.0  # slower than its unscheduled code: builds keep the default
    assert estimated_us(result.tasks) == 2 * 40.0 + 10.0
    result.tasks[1].default_us = result.tasks[1].best_us = None  # neither measured: no estimate, not a wrong one
    assert estimated_us(result.tasks) is None


def test_history_has_one_line_at_start_and_one_per_measured_batch(tmp_path):
    history = tmp_path / "logs" / "progress.jsonl"
    progress = Progress("m for t", stream=io.StringIO(), interactive=False, history=history)
    result = _result()
    progress.start(result, total_trials=128, time_budget=None)
    result.trials, result.tasks[0].best_us = 32, 50.0
    progress.update(result, 12.5)
    result.trials, result.tasks[1].best_us = 64, 5.0  # faster than its default (10)
    progress.update(result, 30.0)
    rows = [json.loads(line) for line in history.read_text().splitlines()]
    assert [r["trials"] for r in rows] == [0, 32, 64]
    assert [r["estimated_us"] for r in rows] == [210.0, 110.0, 105.0]
    assert rows[2]["best_us"] == {"a" * 16: 50.0, "b" * 16: 5.0} and rows[1]["seconds"] == 12.5


def test_no_history_file_without_a_path(tmp_path):
    progress = Progress("m", stream=io.StringIO(), interactive=False)
    progress.start(_result(), total_trials=1, time_budget=None)
    progress.update(_result(), 1.0)
    assert not list(tmp_path.iterdir())

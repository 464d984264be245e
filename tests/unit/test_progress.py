"""Tuning progress: the live line and the convergence history (no TVM)."""

from __future__ import annotations

import io
import json
import time

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


def test_heartbeat_shows_the_line_while_nothing_is_measured(caplog):
    """A search can take a minute: the line (with what runs now) still shows every `min_interval` seconds."""
    progress = Progress("m", stream=io.StringIO(), interactive=False, min_interval=0.2)
    result = _result()
    with caplog.at_level("INFO", logger="ansor_build.tuning"):
        progress.start(result, total_trials=128, time_budget=60, elapsed=lambda: 7.0)
        progress.phase("searching fused_conv2d (task 1 of 2)")
        time.sleep(1.5)
        progress.finish(result)
        lines = [r.getMessage() for r in caplog.records if "searching fused_conv2d" in r.getMessage()]
        assert len(lines) >= 3, lines
        assert lines[0] == ("tuning m: tasks 0/2, trials 0/128, weighted best 0.0 us, 7/60 s; "
                            "searching fused_conv2d (task 1 of 2)")
        count = len(caplog.records)
        time.sleep(0.5)
        assert len(caplog.records) == count  # finish() ended the heartbeat
    assert "0 candidates measured in 0 batches, 0 stored" in caplog.records[-1].getMessage()


def test_terminal_line_is_redrawn_in_place():
    stream = io.StringIO()
    progress = Progress("m", stream=stream, interactive=True, min_interval=0.1)
    result = _result()
    progress.start(result, total_trials=8, time_budget=None, elapsed=lambda: 1.0)
    time.sleep(0.5)
    result.trials = 8
    progress.update(result, 2.0)
    progress.finish(result)
    text = stream.getvalue()
    assert text.count("\r\033[K") >= 3 and "trials 8/8" in text and text.endswith("\r\033[K")

"""Tuning a model of 42 tasks (real models have 25-200; the zoo 3-12): the time budget holds, every measured
candidate is in the store whatever stops tuning, and progress shows at least every 10 s."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import pytest

from ansor_build.tuning.store import read_entry
from helpers import assert_group_ends
from many_tasks import write as write_many_tasks

pytestmark = [pytest.mark.tvm, pytest.mark.tuning]

TARGET = """extends: x86_64-avx2
name: many
tvm: {num-cores: 2}
runtime: {threads: 2}
tuning: {trials_per_task: 16, trials_per_iter: 8, population: 64}
"""
SUMMARY = re.compile(r"tuned \S+ for many: (\d+) trials stored in ([\d.]+) s .*?; (\d+) candidates measured in "
                     r"(\d+) batches, (\d+) stored")
LINE = re.compile(r"tuning \S+ for many: tasks \d+/42, trials (\d+)/\d+, .*?, (\d+)(?:/[\d.]+)? s")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("many")
    (root / "many.yaml").write_text(TARGET)
    return write_many_tasks(root / "many.onnx"), root / "many.yaml"


def _command(project, tuning, records, *extra):
    model, target = project
    return [sys.executable, "-m", "ansor_build", "tune", str(model), "--target", str(target), "--tuning-dir",
            str(tuning), "--records-out", str(records), *extra]


def _stored(tuning) -> int:
    entries = [read_entry(path) for path in tuning.glob("*/*.jsonl")]
    assert all(not entry.corrupt for entry in entries)
    return sum(entry.trials for entry in entries)


def _history(records) -> list[dict]:
    path = records.with_name(records.name.replace(".json", ".logs")) / "progress.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _check_every_measured_candidate_stored(stderr: str, tuning, records) -> dict:
    match = SUMMARY.search(stderr)
    assert match, stderr[-3000:]
    trials, seconds, measured, batches, stored = (float(v) if i == 1 else int(v) for i, v in enumerate(match.groups()))
    assert measured == stored == trials == _stored(tuning) > 0
    history = _history(records)
    assert len(history) == 1 + batches  # one line at the start, one per measured batch
    counts = [row["trials"] for row in history]
    assert counts[-1] == stored and all(b > a for a, b in zip(counts, counts[1:]))  # every batch stored trials
    return {"seconds": seconds, "batches": batches, "stored": stored}


def test_time_budget_holds_for_42_tasks_and_progress_shows_every_10_s(tmp_path, project):
    budget = 60
    proc = subprocess.run(_command(project, tmp_path / "tuning", tmp_path / "r.json", "--time-budget", str(budget)),
                          stderr=subprocess.PIPE, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "stopped: time budget" in proc.stderr
    run = _check_every_measured_candidate_stored(proc.stderr, tmp_path / "tuning", tmp_path / "r.json")
    assert 0.9 * budget <= run["seconds"] <= 1.1 * budget, run
    assert run["batches"] >= 3, run
    # The progress line, in logs: the first within 30 s of the start of tuning, then at least every 10 s (the
    # heartbeat wakes every second: 1 s of slack, and 1 s for the rounding of the printed seconds).
    seconds = [int(m.group(2)) for m in LINE.finditer(proc.stderr)]
    assert seconds and seconds[0] <= 30, proc.stderr[-3000:]
    assert all(b - a <= 12 for a, b in zip([0, *seconds], seconds)), seconds
    assert seconds[-1] >= 0.9 * budget - 12


@pytest.mark.parametrize("signum, batches", [(signal.SIGINT, 1), (signal.SIGTERM, 2)])
def test_sigint_and_sigterm_keep_every_measured_candidate(tmp_path, project, signum, batches):
    """The signal comes after the first (second) measured batch, while the next is searched or measured."""
    tuning, records = tmp_path / "tuning", tmp_path / "r.json"
    proc = subprocess.Popen(_command(project, tuning, records), stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    history = records.with_name("r.logs") / "progress.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and (
            not history.exists() or len(history.read_text().splitlines()) < 1 + batches):
        time.sleep(0.2)
    assert proc.poll() is None and len(history.read_text().splitlines()) >= 1 + batches, "no batch in time"
    time.sleep(1.0 * (batches - 1))
    proc.send_signal(signum)
    try:
        _, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)  # the CLI dumps every thread's stack
        time.sleep(2)
        proc.kill()
        _, stderr = proc.communicate()
        pytest.fail(f"tuning did not stop on {signum!r}:\n{stderr[-6000:]}")
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "stopped: interrupted" in stderr
    _check_every_measured_candidate_stored(stderr, tuning, records)
    assert not records.exists()
    assert_group_ends(proc.pid, 60)

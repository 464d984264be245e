"""Real tuning with MetaSchedule: reuse, tune-only-what-changed, forbid switch, interruption, concurrency."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from ansor_build import zoo
from ansor_build.check import check_package
from ansor_build.tuning.store import read_entry
from helpers import assert_group_ends, one_line_error, run_cli

pytestmark = [pytest.mark.tvm, pytest.mark.tuning]

FORBID = {"ANSOR_BUILD_FORBID_TUNING": "1"}


def plan(model, target, tuning_dir, *extra):
    proc = run_cli("inspect", model, "--target", target, "--tuning-dir", tuning_dir, "--json", *extra, check=True)
    return json.loads(proc.stdout)


def task_files(tuning_dir):
    return sorted(tuning_dir.glob("*/*.jsonl"))


def test_tune_then_reuse_then_tune_only_the_changed_layer(tmp_path, fast_target):
    tuning = tmp_path / "tuning"
    model = zoo.write_model("mlp", tmp_path / "mlp.onnx")
    assert plan(model, fast_target, tuning)["plan"] == "3 tasks: 3 new; 3 to tune"
    proc = run_cli("build", model, "--target", fast_target, "-o", tmp_path / "pkg", "--tuning-dir", tuning,
                   check=True)
    assert "3 tasks: 3 new; 3 to tune" in proc.stderr and "tuning summary" in proc.stderr
    manifest = json.loads((tmp_path / "pkg/manifest.json").read_text())
    assert manifest["tuning"]["records"] >= 1
    assert check_package(tmp_path / "pkg", model).ok
    entries = [read_entry(path) for path in task_files(tuning)]
    assert len(entries) == 3 and all(e.complete(8) and e.budget == 8 for e in entries)

    # Unchanged model: nothing to tune, so the forbid switch passes.
    proc = run_cli("build", model, "--target", fast_target, "-o", tmp_path / "pkg2", "--tuning-dir", tuning,
                   env=FORBID, check=True)
    assert "3 tasks: 3 reused; 0 to tune" in proc.stderr
    assert json.loads((tmp_path / "pkg2/manifest.json").read_text())["tuning"] == manifest["tuning"]

    # A second model sharing every subgraph (the dynamic-batch MLP at batch 1) reuses them too.
    shared = zoo.write_model("mlp", tmp_path / "mlp_dyn.onnx", dynamic_batch=True)
    run_cli("build", shared, "--target", fast_target, "-o", tmp_path / "pkg3", "--tuning-dir", tuning,
            "--shape", "input=1,64", env=FORBID, check=True)

    # One changed layer: the forbid switch names exactly that task; without it exactly one task is tuned.
    variant = zoo.write_model("mlp", tmp_path / "mlp_v1.onnx", variant=1)
    doc = plan(variant, fast_target, tuning)
    assert doc["plan"] == "3 tasks: 2 reused, 1 new; 1 to tune"
    changed = [t for t in doc["tasks"] if t["status"] == "new"]
    line = one_line_error(run_cli("build", variant, "--target", fast_target, "-o", tmp_path / "pkg4",
                                  "--tuning-dir", tuning, env=FORBID))
    assert "ANSOR_BUILD_FORBID_TUNING is set but this build would tune 1 task(s)" in line
    assert changed[0]["key"] in line
    assert not (tmp_path / "pkg4").exists()
    before = {p.name: p.read_bytes() for p in task_files(tuning)}
    run_cli("build", variant, "--target", fast_target, "-o", tmp_path / "pkg4", "--tuning-dir", tuning, check=True)
    after = {p.name: p.read_bytes() for p in task_files(tuning)}
    assert set(after) - set(before) == {f"{changed[0]['key']}.jsonl"}
    assert all(after[name] == data for name, data in before.items())  # reused tasks untouched
    assert check_package(tmp_path / "pkg4", variant).ok


def test_the_budget_is_shared_and_a_share_counts_as_fully_tuned(tmp_path, fast_target):
    """The convnet's transposes run out of candidates after a trial or two: their unspent budget goes to the convs
    (within 8 trials per task in all), and every task counts as fully tuned afterwards, whatever its share."""
    tuning = tmp_path / "tuning"
    model = zoo.write_model("convnet", tmp_path / "convnet.onnx")
    tasks = len(plan(model, fast_target, tuning)["tasks"])
    run_cli("tune", model, "--target", fast_target, "--tuning-dir", tuning, "--records-out", tmp_path / "r.json",
            check=True)
    entries = [read_entry(path) for path in task_files(tuning)]
    trials = sorted(e.trials for e in entries)
    assert len(entries) == tasks and min(trials) < 8 < max(trials), trials
    assert sum(trials) <= 8 * tasks + 8  # the run's budget, overshot by at most one batch
    assert all(e.budget == 8 and e.complete(8) for e in entries)
    doc = plan(model, fast_target, tuning)
    assert doc["plan"] == f"{tasks} tasks: {tasks} reused; 0 to tune", doc["plan"]
    # A larger budget makes them under-tuned again, except those with that many trials already and those whose
    # search ran out of candidates (the transposes: a batch came back short).
    short = sum(1 for e in entries if not e.exhausted and e.trials < 16)
    assert 0 < short < tasks and any(e.exhausted for e in entries)
    assert plan(model, fast_target, tuning, "--trials-per-task", "16")["plan"].endswith(f"; {short} to tune")


def test_modes_off_reuse_full(tmp_path, fast_target):
    tuning = tmp_path / "tuning"
    model = zoo.write_model("mlp", tmp_path / "mlp.onnx")
    proc = run_cli("build", model, "--target", fast_target, "-o", tmp_path / "off", "--tuning-dir", tuning,
                   "--tune", "off", env=FORBID, check=True)
    assert json.loads((tmp_path / "off/manifest.json").read_text())["tuning"]["records"] == 0
    proc = run_cli("build", model, "--target", fast_target, "-o", tmp_path / "reuse", "--tuning-dir", tuning,
                   "--tune", "reuse", env=FORBID, check=True)
    assert "reuse mode: 3 use default schedules" in proc.stderr
    run_cli("build", model, "--target", fast_target, "-o", tmp_path / "full", "--tuning-dir", tuning,
            "--tune", "full", "--trials-per-task", "4", check=True)
    first = {p.name: read_entry(p).trials for p in task_files(tuning)}
    run_cli("build", model, "--target", fast_target, "-o", tmp_path / "full", "--tuning-dir", tuning,
            "--tune", "full", "--trials-per-task", "4", check=True)
    second = {p.name: read_entry(p).trials for p in task_files(tuning)}
    assert set(first) == set(second) and all(second[k] > first[k] for k in first if first[k] >= 4)


def test_time_budget_stops_and_next_build_continues(tmp_path, fast_target):
    tuning = tmp_path / "tuning"
    model = zoo.write_model("mlp", tmp_path / "mlp.onnx")
    started = time.monotonic()
    proc = run_cli("tune", model, "--target", fast_target, "--tuning-dir", tuning, "--time-budget", "20",
                   "--trials-per-task", "400", "--records-out", tmp_path / "r.json", check=True)
    assert "stopped: time budget" in proc.stderr
    assert time.monotonic() - started < 20 * 1.1 + 30  # the budget, plus loading TVM and the model
    doc = plan(model, fast_target, tuning, "--trials-per-task", "400")
    measured = sum(t["trials"] for t in doc["tasks"])
    assert 0 < measured < 400 * len(doc["tasks"])
    assert doc["plan"].endswith(f"{sum(1 for t in doc['tasks'] if t['tune'])} to tune")
    records = json.loads((tmp_path / "r.json").read_text())
    assert sorted(records["tasks"]) == sorted(t["key"] for t in doc["tasks"])


def test_interrupt_keeps_every_measured_record_and_next_build_continues(tmp_path, fast_target):
    tuning = tmp_path / "tuning"
    model = zoo.write_model("mlp", tmp_path / "mlp.onnx")
    command = [sys.executable, "-m", "ansor_build", "tune", str(model), "--target", str(fast_target),
               "--tuning-dir", str(tuning), "--trials-per-task", "16", "--records-out", str(tmp_path / "r.json")]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not any(read_entry(p).records for p in task_files(tuning)):
        time.sleep(0.2)
    assert any(read_entry(p).records for p in task_files(tuning)), "no batch was measured in time"
    measured = {p.name: read_entry(p).trials for p in task_files(tuning)}
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    after = {p.name: read_entry(p) for p in task_files(tuning)}
    assert all(not e.corrupt for e in after.values())
    assert all(after[name].trials >= trials for name, trials in measured.items())  # nothing measured was lost
    assert not (tmp_path / "r.json").exists()
    assert_group_ends(proc.pid, 60)  # the workers of the interrupted run end with it (slowly when loaded)
    doc = plan(model, fast_target, tuning, "--trials-per-task", "16")
    assert any(t["status"] in ("under-tuned", "new") for t in doc["tasks"])
    # The next build continues from the records kept, and ends with every task fully tuned.
    run_cli(*command[3:], check=True)
    doc = plan(model, fast_target, tuning, "--trials-per-task", "16")
    assert all(t["status"] == "reused" for t in doc["tasks"]), doc


def test_two_concurrent_builds_tune_each_task_once(tmp_path, fast_target):
    """Two processes share all three MLP subgraphs: one tunes them, the other waits and reuses."""
    tuning = tmp_path / "tuning"
    a = zoo.write_model("mlp", tmp_path / "a.onnx")
    b = zoo.write_model("mlp", tmp_path / "b.onnx", dynamic_batch=True)
    procs = [subprocess.Popen([sys.executable, "-m", "ansor_build", "tune", str(model), "--target", str(fast_target),
                               "--tuning-dir", str(tuning), "--records-out", str(tmp_path / f"{name}.json"), *extra],
                              stderr=subprocess.PIPE, text=True)
             for name, model, extra in (("a", a, []), ("b", b, ["--shape", "input=1,64"]))]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    entries = [read_entry(p) for p in task_files(tuning)]
    assert len(entries) == 3 and all(not e.corrupt for e in entries)
    assert all(e.trials <= 8 + 8 for e in entries)  # budget 8, overshoot at most one batch: never tuned twice
    records = [json.loads((tmp_path / f"{n}.json").read_text())["records"] for n in ("a", "b")]
    assert records[0] == records[1]

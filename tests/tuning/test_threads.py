"""The runtime thread count a tuned CPU build chooses by timing its model (tuning/threads.py)."""

from __future__ import annotations

import json
import logging

import pytest

from ansor_build import zoo
from ansor_build.build import build_package, tune_model
from ansor_build.target import load_target
from ansor_build.tuning.options import resolve_options
from ansor_build.tuning.threads import (MARGIN, MIN_RUNS, REPEAT, ROUNDS, SECONDS, candidates, fastest,
                                        plan_runs)

pytestmark = [pytest.mark.tvm, pytest.mark.tuning]

# The tuning tier's small budget, without runtime.threads: the build may choose it.
TARGET = """extends: x86_64-avx2
name: choose
tvm: {num-cores: 2}
tuning: {trials_per_task: 8, trials_per_iter: 8, population: 32}
"""


def test_candidates_and_the_margin_that_keeps_every_core():
    assert candidates(1) == [1] and candidates(2) == [1, 2] and candidates(6) == [1, 2, 4, 6]
    assert fastest({1: 15.3, 2: 19.7}) == 1  # MobileNet-style: launches cost more than the second core saves
    assert fastest({1: 96.6, 2: 57.7}) == 2  # ResNet-style
    assert fastest({1: 20.0 * (1 - MARGIN / 2), 2: 20.0}) == 2  # a tie keeps every core


@pytest.mark.parametrize("call_s", [20e-6, 1e-3, 0.01, 0.1, 0.9, 2.5, 30.0])
def test_the_runs_of_a_thread_count_fit_its_seconds(call_s):
    """Fast models get every run; an untuned ResNet-50 (seconds a call) as many as fit, at least MIN_RUNS."""
    rounds, repeat = plan_runs(call_s)
    runs = rounds * repeat
    assert 1 <= rounds <= ROUNDS and 1 <= repeat <= REPEAT and runs >= MIN_RUNS
    assert runs * call_s <= max(SECONDS, MIN_RUNS * call_s)
    if call_s * ROUNDS * REPEAT <= SECONDS:
        assert (rounds, repeat) == (ROUNDS, REPEAT)
    assert fastest({1: 30.0, 2: 20.0, 4: 19.5}) == 4


def _options(target, mode, tuning_dir):
    return resolve_options(load_target(target), mode=mode, tuning_dir=tuning_dir)


def _files(package):
    return {str(p.relative_to(package)): p.read_bytes() for p in package.rglob("*") if p.is_file()}


def test_tuned_build_times_its_model_and_every_later_build_applies_the_choice(tmp_path, monkeypatch):
    model = zoo.write_model("mlp", tmp_path / "mlp.onnx")
    target = tmp_path / "choose.yaml"
    target.write_text(TARGET)
    tuning_dir = tmp_path / "tuning"
    tuned = build_package(model, target, tmp_path / "tuned", tuning=_options(target, "incremental", tuning_dir))
    [stored] = list(tuning_dir.glob("*/threads/*.json"))
    doc = json.loads(stored.read_text())
    assert set(doc["latency_us"]) == {"1", "2"} and all(us > 0 for us in doc["latency_us"].values())
    assert doc["threads"] == fastest({int(k): v for k, v in doc["latency_us"].items()})
    assert tuned.manifest["runtime"]["threads"] == doc["threads"]
    assert doc["records_sha256"] == tuned.manifest["tuning"]["records_sha256"]

    # A build that only reuses records applies the stored choice and measures nothing: the same package.
    monkeypatch.setenv("ANSOR_BUILD_FORBID_TUNING", "1")
    stored.write_text(stored.read_text().replace(f'"threads":{doc["threads"]}', f'"threads":{3 - doc["threads"]}'))
    reused = build_package(model, target, tmp_path / "reused", tuning=_options(target, "reuse", tuning_dir))
    assert reused.manifest["runtime"]["threads"] == 3 - doc["threads"]  # read from the store, not measured again
    stored.write_text(json.dumps(doc, separators=(",", ":"), sort_keys=True) + "\n")
    again = build_package(model, target, tmp_path / "again", tuning=_options(target, "reuse", tuning_dir))
    assert _files(again.package) == _files(tuned.package)

    # The tuning step alone (what the SCons tool runs) writes the choice into the records file a build applies.
    records = tmp_path / "mlp.records.json"
    tune_model(model, target, _options(target, "reuse", tuning_dir), records)
    assert json.loads(records.read_text())["runtime_threads"] == doc["threads"]
    applied = build_package(model, target, tmp_path / "applied", records_file=records)
    assert applied.manifest["runtime"]["threads"] == doc["threads"]


def test_a_target_that_sets_runtime_threads_keeps_them(tmp_path):
    # An unnamed handler on MetaSchedule's logger (a harness's) made its logging setup fail in a second tuning run.
    logging.getLogger("tvm.s_tir.meta_schedule").addHandler(logging.NullHandler())
    model = zoo.write_model("mlp", tmp_path / "mlp.onnx")

    target = tmp_path / "fixed.yaml"
    target.write_text(TARGET + "runtime: {threads: 2}\n")
    tuning_dir = tmp_path / "tuning"
    built = build_package(model, target, tmp_path / "pkg", tuning=_options(target, "incremental", tuning_dir))
    assert built.manifest["runtime"]["threads"] == 2
    assert not list(tuning_dir.glob("*/threads/*.json"))

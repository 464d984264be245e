"""The tuning record store and the plan (no TVM): ordering, merging, corrupt lines, classification."""

from __future__ import annotations

import json
import logging
import multiprocessing

import pytest

from ansor_build.backend.partition import Task
from ansor_build.tuning import TuningOptions, make_plan
from ansor_build.tuning.store import TOP_K, TuningStore, read_entry, target_dirname

TVM = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell", "num-cores": 2}
WORKLOAD = ["123", "d29ya2xvYWQ="]


def rec(us, tag="a"):
    return {"run_us": [us], "trace": [[["Step", [tag]]], []], "args_info": [["TENSOR", "float32", [1]]]}


def store(tmp_path):
    return TuningStore(tmp_path / "tuning", TVM, "0.27.0.post1")


def test_target_dirname_is_readable_and_unique():
    name = target_dirname(TVM)
    assert name.startswith("llvm-x86_64-haswell-") and len(name.split("-")[-1]) == 8
    assert target_dirname(dict(TVM, **{"num-cores": 4})) != name
    cuda = {"kind": "cuda", "arch": "sm_80", "host": {"kind": "llvm", "mtriple": "x86_64-linux-gnu"}}
    assert target_dirname(cuda).startswith("cuda-x86_64-sm_80-")


def test_records_sorted_best_first_deduplicated_failed_dropped(tmp_path):
    s = store(tmp_path)
    s.add("k1", "fused_x", WORKLOAD, [rec(5.0, "a"), rec(2.0, "b"), rec(1e10 * 1e6, "fail")], trials=3)
    s.add("k1", "fused_x", WORKLOAD, [rec(1.0, "c"), rec(9.0, "b")], trials=2, default_us=7.0)
    entry = s.entry("k1")
    assert [r["run_us"][0] for r in entry.records] == [1.0, 2.0, 5.0]  # "b" kept its better run
    assert entry.trials == 5 and entry.best_us == 1.0 and entry.default_us == 7.0
    assert all(r["tvm"] == "0.27.0.post1" for r in entry.records)
    lines = s.path("k1").read_text().splitlines()
    assert json.loads(lines[0])["name"] == "fused_x" and len(lines) == 4
    assert json.loads((s.directory / "target.json").read_text())["tvm"] == TVM


def test_failed_trials_are_counted_with_their_last_error_not_kept(tmp_path):
    s = store(tmp_path)
    s.add("k", "n", WORKLOAD, [rec(2.0, "a")], trials=1)
    assert "failed" not in s.entry("k").header  # files of runs without failures keep their bytes
    s.add("k", "n", WORKLOAD, [rec(1e16, "x"), rec(3.0, "b")], trials=2, failed=1, error="RPCRunner: Timeout")
    s.add("k", "n", WORKLOAD, [rec(1e16, "y")], trials=1, failed=1, error="Check failed: code=1")
    entry = s.entry("k")
    assert entry.trials == 4 and [r["run_us"][0] for r in entry.records] == [2.0, 3.0]
    assert (entry.header["failed"], entry.header["last_error"]) == (2, "Check failed: code=1")


def test_merge_takes_failures_from_the_store_with_most_trials(tmp_path):
    from ansor_build.tuning.merge import merge_entries

    a, b = TuningStore(tmp_path / "a", TVM, "v"), TuningStore(tmp_path / "b", TVM, "v")
    a.add("k", "n", WORKLOAD, [rec(2.0, "a"), rec(1e16, "x")], trials=2, failed=1, error="old")
    b.add("k", "n", WORKLOAD, [rec(1.0, "b")] * 3, trials=3)
    b.add("k", "n", WORKLOAD, [rec(1e16, "y")], trials=1, failed=1, error="new")
    b.add("k", "n", WORKLOAD, [rec(1e16, "z")], trials=1, failed=1, error="newer")
    for order in ([a, b], [b, a]):
        header, records = merge_entries([x.entry("k") for x in order])
        assert (header["trials"], header["failed"], header["last_error"]) == (5, 2, "newer")
        assert [r["run_us"][0] for r in records] == [1.0, 2.0]


def test_keeps_top_k(tmp_path):
    s = store(tmp_path)
    s.add("k", "n", WORKLOAD, [rec(float(i), str(i)) for i in range(TOP_K + 10, 0, -1)], trials=TOP_K + 10)
    entry = s.entry("k")
    assert len(entry.records) == TOP_K and entry.records[0]["run_us"] == [1.0] and entry.trials == TOP_K + 10


def test_same_records_give_same_bytes_in_any_order(tmp_path):
    a, b = TuningStore(tmp_path / "a", TVM, "v"), TuningStore(tmp_path / "b", TVM, "v")
    records = [rec(3.0, "x"), rec(1.0, "y"), rec(2.0, "z")]
    a.add("k", "n", WORKLOAD, records, trials=3)
    b.add("k", "n", WORKLOAD, records[::-1], trials=3)
    assert a.path("k").read_bytes() == b.path("k").read_bytes()


def test_corrupt_and_truncated_lines_are_reported_skipped_and_kept(tmp_path, caplog):
    s = store(tmp_path)
    s.add("k", "n", WORKLOAD, [rec(2.0, "a")], trials=1)
    path = s.path("k")
    good = path.read_text()
    path.write_text(good + '{"run_us": [1.0], "trace"\n' + '["not a record"]\n')
    with caplog.at_level(logging.WARNING):
        entry = s.entry("k")
    assert [r["run_us"] for r in entry.records] == [[2.0]]
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"{path}:3: invalid JSON" in m for m in messages), messages
    assert any(f"{path}:4: not a tuning record" in m for m in messages), messages
    s.add("k", "n", WORKLOAD, [rec(1.0, "b")], trials=1)
    text = path.read_text()
    assert '{"run_us": [1.0], "trace"' in text and '["not a record"]' in text  # never silently dropped
    assert s.entry("k").best_us == 1.0


def _writer(args):
    directory, worker = args
    s = TuningStore(directory, TVM, "v")
    for i in range(20):
        s.add("shared", "n", WORKLOAD, [rec(100.0 + worker * 20 + i, f"{worker}-{i}")], trials=1)


def test_concurrent_writers_lose_nothing(tmp_path):
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(_writer, [(tmp_path / "tuning", w) for w in range(4)])
    entry = TuningStore(tmp_path / "tuning", TVM, "v").entry("shared")
    assert entry.trials == 80 and not entry.corrupt
    assert len(entry.records) == TOP_K and entry.best_us == 100.0


TASKS = [Task("new", "fused_new", 1), Task("done", "fused_done", 2), Task("part", "fused_part", 1),
         Task("dead", "fused_dead", 1), Task("tiny", "reshape", 1), Task("share", "fused_small", 1)]


def planned(tmp_path, mode, trials_per_task=8):
    s = store(tmp_path)
    s.add("done", "fused_done", WORKLOAD, [rec(1.0)], trials=8)
    s.add("part", "fused_part", WORKLOAD, [rec(1.0)], trials=3)
    s.add("dead", "fused_dead", WORKLOAD, [rec(1e16)], trials=8)
    s.add("tiny", "reshape", WORKLOAD, [rec(1.0)], trials=1)
    s.mark_exhausted("tiny")
    s.add("share", "fused_small", WORKLOAD, [rec(1.0)], trials=4)  # its share of a run of 8 trials per task
    s.mark_budget("share", 8)
    return make_plan(TASKS, s, TuningOptions(mode=mode, tuning_dir=tmp_path, trials_per_task=trials_per_task))


def test_plan_classifies_tasks(tmp_path):
    plan = planned(tmp_path, "incremental")
    assert {t.key: t.status for t in plan.tasks} == {"new": "new", "done": "reused", "part": "under-tuned",
                                                      "dead": "failed", "tiny": "reused", "share": "reused"}
    assert [t.key for t in plan.to_tune] == ["new", "part"]
    assert plan.line() == "6 tasks: 3 reused, 1 new, 1 under-tuned, 1 failed; 2 to tune"


def test_a_larger_budget_makes_a_share_under_tuned_again(tmp_path):
    plan = planned(tmp_path, "incremental", trials_per_task=16)
    assert {t.key: t.status for t in plan.tasks}["share"] == "under-tuned"
    assert {t.key: t.status for t in plan.tasks}["done"] == "under-tuned"


def test_mark_budget_keeps_the_largest(tmp_path):
    s = store(tmp_path)
    s.add("t", "fused_t", WORKLOAD, [rec(1.0)], trials=4)
    s.mark_budget("t", 64)
    before = s.path("t").read_bytes()
    s.mark_budget("t", 32)  # a smaller budget changes nothing
    assert s.path("t").read_bytes() == before and s.entry("t").budget == 64
    assert s.entry("t").complete(64) and not s.entry("t").complete(65) and s.entry("t").records
    s.mark_budget("missing", 8)  # no file yet: nothing is written
    assert not s.path("missing").exists()


@pytest.mark.parametrize("mode, to_tune", [("off", []), ("reuse", []), ("full", ["new", "done", "part", "dead",
                                                                                     "tiny", "share"])])
def test_plan_modes(tmp_path, mode, to_tune):
    assert [t.key for t in planned(tmp_path, mode).to_tune] == to_tune


def test_options_validation(tmp_path):
    from ansor_build.errors import InputError

    with pytest.raises(InputError, match="tuning mode 'fast' is not allowed"):
        TuningOptions(mode="fast", tuning_dir=tmp_path)
    with pytest.raises(InputError, match="needs a tuning directory"):
        TuningOptions(mode="incremental")


def test_store_file_is_read_entry(tmp_path):
    s = store(tmp_path)
    s.add("k", "n", WORKLOAD, [rec(2.0)], trials=1)
    assert read_entry(s.path("k")).records == s.entry("k").records


def test_options_accept_str_tuning_dir(tmp_path):
    from pathlib import Path

    options = TuningOptions(mode="reuse", tuning_dir=str(tmp_path))
    assert options.tuning_dir == Path(tmp_path) and isinstance(options.tuning_dir, Path)

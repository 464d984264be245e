"""Tuning records that cannot be true, damaged records files, read-only stores and lost target.json files
(issue 21: never ship a record that cannot be true; one-line errors). No TVM compiles: stores are written by hand
or with the store's own API; two CLI builds stop at their records file (TVM imports the model only)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ansor_build.backend.partition import Task
from ansor_build.backend.records import applied_records, records_digest
from ansor_build.errors import InputError
from ansor_build.tuning import TuningOptions, driver
from ansor_build.tuning import store as store_module
from ansor_build.tuning.driver import read_records_file, records_file_tasks, records_file_threads, records_text, \
    tune_and_select
from ansor_build.tuning.merge import merge
from ansor_build.tuning.stats import format_stats, store_stats
from ansor_build.tuning.store import TuningStore, read_entry, target_json_text
from ansor_build.tuning.targetdir import read_target, resolve
from ansor_build.tuning.threads import FORMAT as THREADS_FORMAT, stored_choice
from helpers import HOST_TARGET, one_line_error, run_cli

TVM = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell", "num-cores": 2}
WORKLOAD = ["123", "d29ya2xvYWQ="]


def rec(us, tag="a"):
    return {"run_us": [us], "trace": [[["Step", [tag]]], []], "args_info": [["TENSOR", "float32", [1]]]}


def line(record) -> str:
    return json.dumps(record, allow_nan=True)


@pytest.fixture
def store(tmp_path):
    s = TuningStore(tmp_path / "tuning", TVM, "0.27.0.post1")
    s.add("k", "fused_conv", WORKLOAD, [rec(5.0, "a"), rec(2.0, "b")], trials=2, default_us=9.0)
    return s


def append(s: TuningStore, key: str, *lines: str) -> Path:
    path = s.path(key)
    path.write_text(path.read_text() + "".join(f"{text}\n" for text in lines))
    return path


# 1. Records that cannot be true: skipped with file and line, counted like unparsable lines, never applied.

IMPOSSIBLE = {
    "negative": line(rec(-5)),
    "zero": line(rec(0)),
    "denormal": line(rec(1e-300)),
    "below 1 ns": line(rec(1e-4)),
    "NaN": line(rec(float("nan"))),
    "Infinity": line(rec(float("inf"))),
    "-Infinity": line(rec(float("-inf"))),
    "string": line(rec("5")),
    "boolean": line(rec(True)),
    "failed run": line(rec(1e16)),
    "empty": line(dict(rec(1.0), run_us=[])),
    "huge list": line(dict(rec(1.0), run_us=[1.0] * 5000)),
    "huge integer": line(rec(10**400)),
    "one bad run": line(dict(rec(1.0), run_us=[1.0, -1.0])),
    "trace not a list": line(dict(rec(1.0), trace="x")),
}


@pytest.mark.parametrize("case", sorted(IMPOSSIBLE))
def test_impossible_latency_is_reported_skipped_and_not_the_best(store, case, caplog):
    path = append(store, "k", IMPOSSIBLE[case])
    with caplog.at_level(logging.WARNING):
        entry = store.entry("k")
    assert entry.best_us == 2.0 and [r["run_us"] for r in entry.records] == [[2.0], [5.0]]
    assert len(entry.corrupt) == 1
    assert any(f"{path}:4: " in r.getMessage() and "line skipped" in r.getMessage() for r in caplog.records), \
        [r.getMessage() for r in caplog.records]
    assert applied_records(store, ["k"])["k"]["record"]["run_us"] == [2.0]


def test_record_more_than_1000x_faster_than_the_default_is_implausible(tmp_path, caplog):
    s = TuningStore(tmp_path / "tuning", TVM, "v")
    s.add("k", "n", WORKLOAD, [rec(50.0, "slow")], trials=1, default_us=10000.0)
    path = append(s, "k", line(rec(5.0, "2000x")), line(rec(20.0, "500x")))
    with caplog.at_level(logging.WARNING):
        entry = s.entry("k")
    assert [r["run_us"] for r in entry.records] == [[20.0], [50.0]]  # 500x is plausible, 2000x is not
    assert any(f"{path}:3: run_us 5 us is 2000x faster" in r.getMessage() for r in caplog.records)


def test_impossible_record_only_line_leaves_no_best_and_nothing_applied(tmp_path):
    s = TuningStore(tmp_path / "tuning", TVM, "v")
    s.add("k", "n", WORKLOAD, [], trials=1, default_us=9.0)
    append(s, "k", line(rec(-5)))
    assert s.entry("k").best_us is None and applied_records(s, ["k"]) == {}


def test_store_add_never_writes_an_impossible_record(tmp_path, caplog):
    s = TuningStore(tmp_path / "tuning", TVM, "v")
    with caplog.at_level(logging.WARNING):
        s.add("k", "n", WORKLOAD, [rec(-5.0, "neg"), rec(float("nan"), "nan"), rec(1e16, "failed"), rec(3.0, "ok")],
              trials=4, default_us=float("nan"), failed=1, error="timeout")
    text = s.path("k").read_text()
    assert "NaN" not in text and "-5" not in text and "default_us" not in text
    entry = read_entry(s.path("k"), strict=True)
    assert [r["run_us"] for r in entry.records] == [[3.0]] and entry.trials == 4
    messages = [r.getMessage() for r in caplog.records]
    assert sum("not kept" in m for m in messages) == 3, messages  # -5, NaN and the NaN default; failed: counted


def test_db_stats_never_shows_a_negative_speedup(store):
    append(store, "k", line(rec(-5)), line(rec(1e-300)))
    stats = store_stats(store.directory)
    row = stats["tasks"][0]
    assert row["best_us"] == 2.0 and row["unreadable_lines"] == 2 and stats["records"] == 2
    text = format_stats(stats)
    assert "4.5x" in text and "-5" not in text and "2 unreadable lines" in text


def test_merge_refuses_an_impossible_record_naming_file_and_line(store, tmp_path):
    path = append(store, "k", line(rec(-5)))
    with pytest.raises(InputError, match=rf"^{path}:4: run_us value -5 is not a latency"):
        merge([store.directory], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_merge_drops_a_record_implausible_against_the_other_stores_default(tmp_path, caplog):
    a, b = TuningStore(tmp_path / "a", TVM, "v"), TuningStore(tmp_path / "b", TVM, "v")
    a.add("k", "n", WORKLOAD, [rec(0.01, "tiny")], trials=1)  # no default measured: plausible on its own
    b.add("k", "n", WORKLOAD, [rec(50.0, "b")], trials=1, default_us=100.0)
    with caplog.at_level(logging.WARNING):
        merge([a.directory, b.directory], tmp_path / "out")
    entry = read_entry(tmp_path / "out" / "k.jsonl", strict=True)
    assert [r["run_us"] for r in entry.records] == [[50.0]]


@pytest.mark.parametrize("field, value", [("trials", "many"), ("trials", -1), ("trials", 1e300),
                                          ("default_us", -1.0), ("default_us", float("nan")), ("failed", True),
                                          ("budget", "x"), ("name", 5), ("workload", "w")])
def test_header_with_impossible_field_is_skipped_not_a_crash(store, field, value, caplog):
    path = store.path("k")
    lines = path.read_text().splitlines()
    lines[0] = json.dumps(dict(json.loads(lines[0]), **{field: value}), allow_nan=True)
    path.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING):
        entry = store.entry("k")
    assert entry.header is None and entry.trials == 2 and entry.best_us == 2.0
    assert any(f"{path}:1: " in r.getMessage() for r in caplog.records)
    stats = store_stats(store.directory)
    assert stats["tasks"][0]["unreadable_lines"] == 1
    with pytest.raises(InputError, match=rf"^{path}:1: "):
        merge([store.directory], path.parent.parent / "out")


def test_binary_garbage_line_is_skipped_and_kept_byte_for_byte(store):
    path = store.path("k")
    garbage = b"\xff\xfe\x00binary\x80"
    path.write_bytes(path.read_bytes() + garbage + b"\n")
    entry = store.entry("k")
    assert entry.best_us == 2.0 and len(entry.corrupt) == 1
    store.add("k", "fused_conv", WORKLOAD, [rec(1.0, "c")], trials=1)
    assert garbage in path.read_bytes() and store.entry("k").best_us == 1.0
    with pytest.raises(InputError, match=rf"^{path}:5: not UTF-8 text"):
        read_entry(path, strict=True)


def test_deeply_nested_line_is_skipped(store):
    append(store, "k", "[" * 100000)
    assert store.entry("k").best_us == 2.0 and len(store.entry("k").corrupt) == 1


def test_huge_task_file_is_one_line_error(store, monkeypatch):
    monkeypatch.setattr(store_module, "MAX_FILE_BYTES", 1000)
    append(store, "k", line(rec(3.0, "x" * 2000)))
    with pytest.raises(InputError, match=rf"^{store.path('k')}: larger than"):
        store.entry("k")


def test_records_digest_refuses_an_impossible_record():
    applied = {"k": {"name": "n", "workload": WORKLOAD, "record": rec(-5.0)}}
    with pytest.raises(InputError, match="applied record of task k: run_us value -5.0 is not a latency"):
        records_digest(applied)
    applied["k"]["record"] = rec(2.0)
    assert len(records_digest(applied)) == 64


# 2. A malformed --records file is one line naming the file and what is wrong.

def records_file(tmp_path, **changes) -> Path:
    applied = {"k1": {"name": "fused_conv", "workload": WORKLOAD, "record": rec(2.0, "b")}}
    doc = json.loads(records_text(TVM, ["k1", "k2"], applied, threads=2))
    doc.update(changes)
    path = tmp_path / "model.records.json"
    path.write_text(json.dumps(doc, allow_nan=True))
    return path


def test_valid_records_file_reads(tmp_path):
    path = records_file(tmp_path)
    assert read_records_file(path, TVM)["k1"]["record"]["run_us"] == [2.0]
    assert records_file_threads(path, TVM) == 2 and records_file_tasks(path, TVM) == ["k1", "k2"]


BAD_RECORDS = {
    "not JSON": (b"records", "invalid JSON"),
    "truncated": (b'{"format":1,"records":{"k1":{"na', "invalid JSON"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "not UTF-8 text"),
    "empty": (b"", "invalid JSON"),
    "list": (b"[1, 2]", "not an ansor-build records file"),
    "nested": (b"[" * 100000, "nested too deeply"),
    "NaN": (None, "not a JSON number"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_malformed_records_file_is_one_line_error(tmp_path, case):
    data, expected = BAD_RECORDS[case]
    path = tmp_path / "bad.records.json"
    if data is None:
        path.write_text(records_text(TVM, ["k1"], {}, None).replace("{}", '{"k1":{"name":"n","workload":'
                                                                      '["1","2"],"record":{"run_us":[NaN],'
                                                                      '"trace":[],"args_info":[]}}}'))
    else:
        path.write_bytes(data)
    with pytest.raises(InputError) as err:
        read_records_file(path, TVM)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message, message


@pytest.mark.parametrize("change, expected", [
    ({"target": {"kind": "cuda"}}, "records are for target"),
    ({"target": None}, "records are for target"),
    ({"format": 2}, "not an ansor-build records file"),
    ({"records": []}, "records is not an object"),
    ({"tasks": "k1"}, "tasks is not a list"),
    ({"records": {"k1": {"name": "n", "workload": WORKLOAD, "record": rec(-5)}}}, "record of task k1: run_us value"),
    ({"records": {"k1": {"name": "n", "workload": WORKLOAD, "record": rec(1e-300)}}}, "is not a latency"),
    ({"records": {"k1": {"name": "n", "workload": WORKLOAD, "record": rec(0)}}}, "is not a latency"),
    ({"records": {"k1": {"name": "n", "workload": "w", "record": rec(1.0)}}}, "workload is not"),
    ({"records": {"k1": {"name": "n", "workload": WORKLOAD}}}, "not {name, workload, record}"),
    ({"records": {"k1": "x"}}, "not {name, workload, record}"),
    ({"records": {"zz": {"name": "n", "workload": WORKLOAD, "record": rec(1.0)}}}, "not one of the file's tasks"),
    ({"runtime_threads": -1}, "runtime_threads -1 is not a thread count"),
    ({"runtime_threads": 1e9}, "is not a thread count"),
])
def test_records_file_of_wrong_shape_or_target_is_one_line_error(tmp_path, change, expected):
    path = records_file(tmp_path, **change)
    with pytest.raises(InputError) as err:
        read_records_file(path, TVM)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message, message


def test_records_file_size_is_capped(tmp_path, monkeypatch):
    path = records_file(tmp_path)
    monkeypatch.setattr(driver, "MAX_RECORDS_BYTES", 100)
    with pytest.raises(InputError, match=rf"^{path}: larger than"):
        read_records_file(path, TVM)


def test_records_file_that_is_a_directory_or_device_is_one_line_error(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        read_records_file(tmp_path, TVM)
    with pytest.raises(InputError, match="not a regular file"):
        read_records_file(Path("/dev/zero"), TVM)
    with pytest.raises(InputError, match="records file not found"):
        read_records_file(tmp_path / "missing.json", TVM)


@pytest.mark.parametrize("content, expected", [(b"\x00\xffgarbage", "not UTF-8 text"),
                                               (None, "record of task k1: run_us value -5")])
def test_build_with_malformed_records_file_is_one_line_error(tmp_path, content, expected):
    from ansor_build import zoo
    from ansor_build.target import load_target

    model = zoo.write_model("mlp", tmp_path / "mlp.onnx")
    bad = tmp_path / "bad.json"
    if content is None:  # right target and shape, impossible latency
        applied = {"k1": {"name": "n", "workload": WORKLOAD, "record": rec(-5.0)}}
        bad.write_text(records_text(load_target(HOST_TARGET).tuned_tvm(), ["k1"], applied))
    else:
        bad.write_bytes(content)
    error = one_line_error(run_cli("build", model, "--target", HOST_TARGET, "-o", tmp_path / "pkg", "--records", bad))
    assert f"{bad}: " in error and expected in error, error
    assert not (tmp_path / "pkg").exists()


# 3. A read-only store fails in one line before tuning; reuse mode still works and writes nothing.

class FakeTarget:
    def tuned_tvm(self):
        return TVM


TASKS = [Task("k", "fused_conv", 1), Task("new", "fused_new", 1)]


def deny_writes_under(monkeypatch, root: Path):
    real = os.access

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and Path(path).resolve().is_relative_to(root.resolve()):
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_read_only_store_is_one_line_error_before_tuning(store, tmp_path, monkeypatch):
    deny_writes_under(monkeypatch, store.directory)
    monkeypatch.setattr(driver, "_tune_claimed", lambda *a, **k: pytest.fail("tuning started"))
    options = TuningOptions(mode="incremental", tuning_dir=tmp_path / "tuning", trials_per_task=1)
    with pytest.raises(InputError) as err:
        tune_and_select("mlp", TASKS, [], FakeTarget(), None, options, tmp_path / "logs")
    message = str(err.value)
    assert message.startswith(f"{store.directory}: tuning store is not writable") and "--tune reuse" in message


def test_read_only_store_write_probe_failure_is_one_line_error(store, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(store_module.tempfile, "mkstemp", refuse)
    with pytest.raises(InputError, match=rf"^{store.directory}: tuning store is not writable \(Read-only file system"):
        store.check_writable()


def test_read_only_store_lock_failure_is_one_line_error(store, monkeypatch):
    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("builtins.open", refuse)
    with pytest.raises(InputError, match=rf"^{store.directory}: cannot lock the tuning store"):
        with store.claim("k", wait=False):
            pass


def test_reuse_mode_on_read_only_store_works_and_writes_nothing(store, tmp_path, monkeypatch):
    (store.directory / "target.json").unlink()  # even a lost target.json: a warning, not an error
    before = files(store.directory)
    deny_writes_under(monkeypatch, store.directory)
    monkeypatch.setattr(store_module, "write_atomic", lambda *a: (_ for _ in ()).throw(PermissionError(13, "denied")))
    options = TuningOptions(mode="reuse", tuning_dir=tmp_path / "tuning")
    plan, applied = tune_and_select("mlp", TASKS, [], FakeTarget(), None, options, tmp_path / "logs")
    assert not plan.to_tune and applied["k"]["record"]["run_us"] == [2.0]
    assert files(store.directory) == before


def _read_only_namespace_works() -> bool:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    proc = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind -o ro / /mnt"], capture_output=True)
    return proc.returncode == 0


@pytest.mark.skipif(not _read_only_namespace_works(), reason="needs a private mount namespace (unshare -m, mount)")
def test_read_only_bind_mounted_store_incremental_fails_reuse_works(store, tmp_path):
    """A real read-only store (a read-only bind mount in a private mount namespace: root ignores chmod)."""
    script = f"""
import json, sys
from pathlib import Path
from ansor_build.backend.partition import Task
from ansor_build.errors import InputError
from ansor_build.tuning import TuningOptions
from ansor_build.tuning.driver import tune_and_select

class Target:
    def tuned_tvm(self):
        return {TVM!r}

tasks = [Task("k", "fused_conv", 1), Task("new", "fused_new", 1)]
root = Path({str(tmp_path / "tuning")!r})
plan, applied = tune_and_select("m", tasks, [], Target(), None, TuningOptions(mode="reuse", tuning_dir=root), root)
print("reuse", sorted(applied))
try:
    tune_and_select("m", tasks, [], Target(), None, TuningOptions(mode="incremental", tuning_dir=root), root)
except InputError as err:
    print("incremental", err)
"""
    root = tmp_path / "tuning"
    proc = subprocess.run(["unshare", "-m", "sh", "-c", f'mount --bind -o ro "{root}" "{root}" && '
                           f'"{sys.executable}" -c "$0"', script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "reuse ['k']", proc.stdout + proc.stderr
    assert lines[1].startswith(f"incremental {store.directory}: tuning store is not writable"), proc.stdout


# 4. A lost target.json: rewritten by a tuning run that opens the store; db stats / merge say what to do.

def test_lost_target_json_is_rewritten_when_a_tuning_run_opens_the_store(store, tmp_path):
    meta = store.directory / "target.json"
    meta.unlink()
    options = TuningOptions(mode="reuse", tuning_dir=tmp_path / "tuning")
    tune_and_select("mlp", TASKS, [], FakeTarget(), None, options, tmp_path / "logs")
    assert meta.read_text() == target_json_text(TVM)
    meta.write_bytes(b"\x00garbage")  # unreadable: rewritten too
    tune_and_select("mlp", TASKS, [], FakeTarget(), None, options, tmp_path / "logs")
    assert meta.read_text() == target_json_text(TVM)


def test_target_json_of_another_target_in_a_directory_named_for_this_one_is_refused(store):
    (store.directory / "target.json").write_text(target_json_text(dict(TVM, mcpu="znver3")))
    with pytest.raises(InputError, match="records are for target .*znver3.* but the directory is named for"):
        store.restore_target_file()


def test_db_stats_of_a_directory_without_target_json(store):
    (store.directory / "target.json").unlink()
    assert resolve(store.directory.parent) == [store.directory]  # still found under its tuning directory
    stats = store_stats(store.directory)
    assert stats["target"] is None and stats["records"] == 2
    assert stats["target_error"].startswith(f"{store.directory}/target.json: missing")
    text = format_stats(stats)
    assert "target unknown: " in text and "--tune reuse" in text
    assert store_stats(store.directory, TVM)["target"] == TVM  # --target names it: the directory is named for it


def test_db_merge_of_a_directory_without_target_json(store, tmp_path):
    (store.directory / "target.json").unlink()
    with pytest.raises(InputError) as err:
        merge([store.directory], tmp_path / "out")
    message = str(err.value)
    assert message.startswith(f"{store.directory}/target.json: missing") and "--target" in message
    with pytest.raises(InputError, match="not this directory"):
        merge([store.directory], tmp_path / "out", dict(TVM, mcpu="znver3"))
    result = merge([store.directory], store.directory, TVM)  # --target: merged into itself, target.json back
    assert read_target(store.directory) == TVM and result.records == 2
    (store.directory / "target.json").unlink()
    other = TuningStore(tmp_path / "other", TVM, "v")
    other.add("k2", "n", WORKLOAD, [rec(1.0)], trials=1)
    merge([other.directory, store.directory], tmp_path / "out")  # another input names the target
    assert read_target(tmp_path / "out") == TVM


def test_db_stats_and_merge_cli_without_target_json(store, tmp_path):
    (store.directory / "target.json").unlink()
    proc = run_cli("db", "stats", store.directory.parent, check=True)
    assert "target unknown: " in proc.stdout and "2 records" in proc.stdout
    error = one_line_error(run_cli("db", "merge", store.directory.parent, "-o", tmp_path / "out"))
    assert f"{store.directory}/target.json: missing" in error


# The runtime thread count stored next to the records is a tuning result too.

@pytest.mark.parametrize("threads", [-5, 0, 1e300, "4", True, 10**6])
def test_stored_thread_count_that_cannot_be_one_is_ignored(tmp_path, threads):
    path = tmp_path / "threads.json"
    path.write_text(json.dumps({"format": THREADS_FORMAT, "records_sha256": "d", "threads": threads}))
    assert stored_choice(path, "d") is None
    path.write_text(json.dumps({"format": THREADS_FORMAT, "records_sha256": "d", "threads": 2}))
    assert stored_choice(path, "d") == 2
    path.write_text("[" * 100000)
    assert stored_choice(path, "d") is None

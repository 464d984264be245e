"""Model task lists: the store files a tuning step depends on, found without TVM (what SCons keys it on)."""

from __future__ import annotations

import json

from ansor_build.model import files_sha256
from ansor_build.tuning.store import TuningStore
from ansor_build.tuning.tasklist import list_path, model_task_files, read_tasks, write_task_list

TVM = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell", "num-cores": 2}
WORKLOAD = ["123", "d29ya2xvYWQ="]


def rec(us):
    return {"run_us": [us], "trace": [[["Step", ["a"]]], []], "args_info": []}


def test_task_files_follow_the_models_list_else_every_record_file(tmp_path):
    store = TuningStore(tmp_path / "tuning", TVM, "v")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not parsed: only hashed")
    assert model_task_files(store.directory, [model], None) == []  # no target directory yet
    for key in ("a", "b", "other"):
        store.add(key, "n", WORKLOAD, [rec(1.0)], trials=1)
    assert model_task_files(store.directory, [model], None) == [store.path(k) for k in ("a", "b", "other")]

    sha = files_sha256([model])
    path = write_task_list(store.directory, sha, {"x": [1, 4]}, ["b", "a", "missing"])
    assert path == list_path(store.directory, sha, {"x": (1, 4)}) and read_tasks(path) == ["a", "b", "missing"]
    assert model_task_files(store.directory, [model], {"x": [1, 4]}) == [path, store.path("a"), store.path("b")]
    # Another shape or other model bytes is another list: without one, every record file again.
    assert len(model_task_files(store.directory, [model], {"x": [2, 4]})) == 3
    model.write_bytes(b"changed")
    assert len(model_task_files(store.directory, [model], {"x": [1, 4]})) == 3


def test_task_list_is_deterministic_and_not_rewritten_when_equal(tmp_path):
    store = TuningStore(tmp_path / "tuning", TVM, "v")
    assert write_task_list(store.directory, "f" * 64, None, ["a"]) is None  # no target directory: nothing written
    store.add("a", "n", WORKLOAD, [rec(1.0)], trials=1)
    path = write_task_list(store.directory, "f" * 64, None, ["b", "a", "a"])
    doc = json.loads(path.read_text())
    assert doc["tasks"] == ["a", "b"] and doc["model_sha256"] == "f" * 64 and doc["versions"]["ansor-build"]
    mtime = path.stat().st_mtime_ns
    assert write_task_list(store.directory, "f" * 64, None, ["a", "b"]) == path
    assert path.stat().st_mtime_ns == mtime
    path.write_text("{not json")
    assert read_tasks(path) is None

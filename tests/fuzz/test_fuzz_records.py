"""Damaged tuning records: store files and records files, read in-process (many cases) and by `db stats` (a few)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansor_build.errors import AnsorError
from ansor_build.tuning.driver import read_records_file, records_text
from ansor_build.tuning.merge import merge
from ansor_build.tuning.stats import format_stats, store_stats
from ansor_build.tuning.store import TuningStore, read_entry
from conftest import examples
from guard import assert_clean_exit, call_clean, snapshot
from helpers import run_cli
from mutate import byte_edits, tree_edits

pytestmark = pytest.mark.fuzz

TVM = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell", "num-cores": 2}
WORKLOAD = ["123", "d29ya2xvYWQ="]


def rec(us, tag):
    return {"run_us": [us, us * 1.01], "trace": [[["Step", [tag]]], []], "args_info": [["TENSOR", "float32", [1]]]}


def valid_store(root):
    """A store of one target with two workloads; returns (target directory, text of the first task file)."""
    store = TuningStore(root / "tuning", TVM, "0.27.0.post1")
    store.add("k1", "fused_conv", WORKLOAD, [rec(5.0, "a"), rec(2.0, "b")], trials=2, default_us=9.0)
    store.add("k2", "fused_dense", WORKLOAD, [rec(1.5, "c")], trials=1, default_us=3.0)
    return store.directory, store.path("k1").read_text()


@st.composite
def damaged_task_file(draw, text: str) -> bytes:
    lines = text.splitlines()
    if draw(st.booleans()):
        return draw(byte_edits(text.encode()))
    index = draw(st.integers(0, len(lines) - 1))
    lines[index] = json.dumps(draw(tree_edits(json.loads(lines[index]))), allow_nan=True)
    return "\n".join(lines).encode() + b"\n"


def damaged_store(root, data):
    """A valid store whose first task file is damaged; returns the target directory."""
    directory, text = valid_store(root)
    (directory / "k1.jsonl").write_bytes(data.draw(damaged_task_file(text)))
    return directory


def _check_entry(entry) -> None:
    """What a store hands on must be true: a best latency is finite and positive, records are best first."""
    if entry.best_us is not None:
        assert math.isfinite(entry.best_us) and entry.best_us > 0, entry.best_us
    latencies = [min(r["run_us"]) if isinstance(r.get("run_us"), list) else None for r in entry.records]
    assert all(isinstance(x, (int, float)) and math.isfinite(x) and x > 0 for x in latencies), latencies


@settings(max_examples=examples(200))
@given(data=st.data())
def test_damaged_store_reads_stats_and_merges_cleanly(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("s")
    directory = damaged_store(root, data)
    entry = call_clean(read_entry, directory / "k1.jsonl")
    if not isinstance(entry, AnsorError):
        _check_entry(entry)
    stats = call_clean(store_stats, directory)
    if not isinstance(stats, AnsorError):
        call_clean(format_stats, stats)
    call_clean(merge, [directory], root / "merged")


@settings(max_examples=examples(150))
@given(data=st.data())
def test_damaged_records_file_reads_cleanly(tmp_path_factory, data):
    applied = {"k1": {"name": "fused_conv", "workload": WORKLOAD, "record": rec(2.0, "b")}}
    text = records_text(TVM, ["k1"], applied, threads=2)
    path = tmp_path_factory.mktemp("r") / "model.records.json"
    if data.draw(st.booleans()):
        path.write_bytes(data.draw(byte_edits(text.encode())))
    else:
        path.write_text(json.dumps(data.draw(tree_edits(json.loads(text))), allow_nan=True))
    result = call_clean(read_records_file, path, TVM)
    if not isinstance(result, AnsorError):
        for item in result.values():
            us = min(item["record"]["run_us"])
            assert math.isfinite(us) and us > 0, item


@settings(max_examples=examples(6))
@given(data=st.data())
def test_db_stats_of_damaged_store_ends_cleanly(tmp_path_factory, data):
    work = tmp_path_factory.mktemp("work")
    directory = damaged_store(work, data)
    before = snapshot(work)
    proc = run_cli("db", "stats", directory, cwd=work)
    assert_clean_exit(proc, (directory / "k1.jsonl").read_bytes()[:2000].decode("utf-8", "replace"))
    assert snapshot(work) == before  # stats only reads

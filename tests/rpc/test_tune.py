"""Tuning through the tracker: the same records as local tuning, on several devices at once; cross targets' candidates
are built here and reach the device in its own architecture."""

from __future__ import annotations

import functools
import json
import re
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from ansor_build import zoo
from ansor_build.check import check_package
from ansor_build.tuning.store import read_entry
from cross_tools import require_tool
from helpers import one_line_error, run_cli
from rpc_farm import KEY, write_target

pytestmark = [pytest.mark.tvm, pytest.mark.tuning, pytest.mark.rpc]


def store_entries(tuning_dir) -> dict:
    """{target directory name: {task key: Entry}}"""
    out: dict = {}
    for path in sorted(tuning_dir.glob("*/*.jsonl")):
        out.setdefault(path.parent.name, {})[path.stem] = read_entry(path)
    return out


def sessions(server) -> list[tuple[datetime, datetime]]:
    """(start, end) of every session in a server's log."""
    stamp = r"^(\S+ \S+) INFO "
    text = server.log.read_text()
    starts = [datetime.fromisoformat(t) for t in re.findall(stamp + r"connected from", text, re.MULTILINE)]
    ends = [datetime.fromisoformat(t) for t in re.findall(stamp + r"finish serving", text, re.MULTILINE)]
    return list(zip(starts, ends))


def test_rpc_tuning_gives_the_records_of_local_tuning_on_two_devices_at_once(tmp_path, farm):
    model = zoo.write_model("mlp", tmp_path / "mlp.onnx")
    local = write_target(tmp_path / "local.yaml")
    remote = write_target(tmp_path / "remote.yaml", farm.address, parallel=2)
    before = {id(s): len(sessions(s)) for s in farm.servers}
    for name, target in (("local", local), ("remote", remote)):
        proc = run_cli("build", model, "--target", target, "-o", tmp_path / f"pkg-{name}", "--tuning-dir",
                       tmp_path / f"tuning-{name}", check=True)
        assert "3 tasks: 3 new; 3 to tune" in proc.stderr
    assert f"measuring on 2 '{KEY}' device(s) of tracker {farm.address}" in proc.stderr

    local_store, remote_store = store_entries(tmp_path / "tuning-local"), store_entries(tmp_path / "tuning-remote")
    assert list(local_store) == list(remote_store)  # one target: the same store directory
    (directory,) = local_store
    assert sorted(local_store[directory]) == sorted(remote_store[directory])  # the same task keys
    for key, here in local_store[directory].items():
        there = remote_store[directory][key]
        assert there.complete(8) and there.records and not there.header.get("failed"), there.header
        assert 1 / 3 < there.default_us / here.default_us < 3, (key, here.default_us, there.default_us)
        # Two searches of ~8 trials find different sub-microsecond schedules (4x apart seen in CI); a timing that
        # included the RPC round trip (~100 us) would be off by far more than 10x.
        assert 1 / 10 < there.best_us / here.best_us < 10, (key, here.best_us, there.best_us)
    assert check_package(tmp_path / "pkg-remote", model).ok
    manifests = [json.loads((tmp_path / f"pkg-{n}/manifest.json").read_text()) for n in ("local", "remote")]
    assert manifests[0]["tuning"]["records"] >= 1 and manifests[1]["tuning"]["records"] >= 1

    # Both devices measured, and at the same time: some session of one overlaps a session of the other.
    test_servers = [s for s in farm.servers if s.key == KEY]
    used = [sessions(s)[before[id(s)]:] for s in test_servers]
    assert all(len(u) >= 5 for u in used), [len(u) for u in used]
    assert any(a0 < b1 and b0 < a1 for a0, a1 in used[0] for b0, b1 in used[1]), "no two sessions overlapped"


def test_cross_target_candidates_reach_the_device_built_for_it(tmp_path, farm):
    """An aarch64 target's candidates are linked by aarch64-linux-gnu-g++: x86 servers cannot load them, and the
    build stops before the search with one line naming the cause, instead of failing every trial."""
    require_tool("aarch64-linux-gnu-g++", "apt-get install g++-aarch64-linux-gnu")
    model = zoo.write_model("mlp", tmp_path / "mlp.onnx")
    target = write_target(tmp_path / "pi.yaml", farm.address, extends="aarch64-cortex-a72")
    line = one_line_error(run_cli("tune", model, "--target", target, "--tuning-dir", tmp_path / "tuning",
                                  "--records-out", tmp_path / "r.json"))
    assert f"pi.yaml: tuning.runner.key: no '{KEY}' device of tracker {farm.address} could run the unscheduled " \
           f"code of any task" in line
    assert "candidate.so: cannot open shared object file" in line  # glibc's words for another machine's ELF
    assert "check that they are aarch64-linux-gnu devices" in line
    stores = store_entries(tmp_path / "tuning").values()
    assert all(not entry.trials for entries in stores for entry in entries.values())


def test_cross_target_candidates_are_shared_libraries_of_the_device(tmp_path, farm):
    """The RPC builder links each candidate with the target's toolchain (TVM's default, a .tar, needs a compiler on
    the device), and with the package's thread pool."""
    require_tool("aarch64-linux-gnu-g++", "apt-get install g++-aarch64-linux-gnu")
    from ansor_build.backend.codegen import export_candidate
    from ansor_build.backend.records import import_intrinsics
    from ansor_build.backend.rpc import make_builder_runner
    from ansor_build.build import prepare
    from ansor_build.package.elf import read_elf
    from ansor_build.target import load_target
    from tvm.s_tir import meta_schedule as ms

    target = load_target(write_target(tmp_path / "pi.yaml", farm.address, extends="aarch64-cortex-a72"))
    prepared = prepare(zoo.write_model("mlp", tmp_path / "mlp.onnx"), target, None, tuned=True)
    f_export = functools.partial(export_candidate, target.runner.cxx, tuple(target.runner.flags), True)
    builder, runner = make_builder_runner(target.runner, 1, 1, functools.partial(import_intrinsics, "arm_cpu"),
                                          f_export)
    try:
        built = builder.build([ms.builder.BuilderInput(t.dispatched[0], t.target) for t in prepared.ms_tasks])
    finally:
        runner.pool.shutdown()
    assert [b.error_msg for b in built] == [None] * len(prepared.ms_tasks)
    for result in built:
        path = Path(result.artifact_path)
        assert path.suffix == ".so" and read_elf(path).machine == "aarch64", path
        assert b"ansor-pool" in path.read_bytes()  # the package's thread pool (its workers' name) is linked in
        assert read_elf(path).needed == ["libc.so.6"]  # and needs no more than libc
        shutil.rmtree(path.parent)

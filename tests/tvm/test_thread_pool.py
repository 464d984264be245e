"""The package's runtime (ansor_build/backend/package_runtime.py): its thread pool (parallel_pool.cc) and
workspace allocator (workspace.cc), linked into every CPU model.so.

A tuned ResNet-style package (real layout-rewriting schedules, whose kernels run parallel loops and allocate scratch
buffers in them) is run in fresh processes: with the pool, with TVM's pool (ANSOR_THREAD_POOL=tvm) and workspace
(ANSOR_WORKSPACE=tvm), across a fork, from two threads at once, as several libraries in one process, and through
the C++ runner, which unloads model.so before it exits (the workers must end first). Every run must give
onnxruntime's outputs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ansor_build.backend.package_runtime import HIDDEN
from ansor_build.build import build_package, prepare
from ansor_build.check import reference_outputs
from ansor_build.package.elf import newest, read_elf
from ansor_build.package.loader import default_input
from ansor_build.target import load_target
from ansor_build.tuning.driver import write_records_file
from helpers import HOST_TARGET
from prepack_records import layout_rewriting_records

pytestmark = pytest.mark.tvm

REPO = Path(__file__).resolve().parents[2]

# Runs in a fresh process: argv = package, mode. Prints one JSON line.
SCRIPT = r"""
import ctypes, json, os, signal, sys, threading
import numpy as np
sys.path.insert(0, os.environ["REPO"])
from ansor_build.package import loader

package_dir, mode = sys.argv[1], sys.argv[2]

def thread_names():
    return sorted(open(f"/proc/self/task/{tid}/comm").read().strip() for tid in os.listdir("/proc/self/task"))

package = loader.load(package_dir)
inputs = package.default_inputs()
first = package(*inputs)[0]
report = {"output": first.tolist(), "threads": thread_names(), "same": True}
if mode == "fork":
    pid = os.fork()
    if pid == 0:  # the child has no pool workers: it must start its own, not wait for the parent's
        signal.alarm(60)  # a child that hangs must not outlive the test
        ok = all(np.array_equal(package(*inputs)[0], first) for _ in range(20))
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    report["child_status"] = status
    report["same"] = all(np.array_equal(package(*inputs)[0], first) for _ in range(20))
elif mode == "concurrent":  # two threads launching at once: one gets the pool, the other runs inline
    results = []
    def calls():
        results.append(all(np.array_equal(package(*inputs)[0], first) for _ in range(200)))
    workers = [threading.Thread(target=calls) for _ in range(2)]
    for worker in workers: worker.start()
    for worker in workers: worker.join()
    report["same"] = results == [True, True]
elif mode == "several":  # copies of the package: each path is a library of its own, with its own pool
    packages = [package] + [loader.load(copy) for copy in sys.argv[3:]]
    for _ in range(20):
        report["same"] = report["same"] and all(np.array_equal(p(*inputs)[0], first) for p in packages)
    report["threads_after"] = thread_names()
def workspace():
    stats = (ctypes.c_uint64 * 3)()
    ctypes.CDLL(os.path.join(package_dir, "model.so")).ansor_workspace_stats(stats)  # the library TVM loaded
    return {"arena": stats[0], "heap": stats[1], "grown": stats[2]}
before = workspace()
for _ in range(5):
    package(*inputs)
report["workspace"] = {name: count - before[name] for name, count in workspace().items()}  # five calls, warm
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def tuned_resnet(zoo_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pool")
    target = load_target(HOST_TARGET)
    prepared = prepare(zoo_dir / "resnet.onnx", target, tuned=True)
    records = tmp / "records.json"
    write_records_file(records, target.tuned_tvm(), [t.key for t in prepared.tasks], layout_rewriting_records(prepared))
    result = build_package(zoo_dir / "resnet.onnx", HOST_TARGET, tmp / "resnet", records_file=records)
    inputs = [default_input(sig["shape"], sig["dtype"]) for sig in result.manifest["inputs"]]  # what SCRIPT runs
    reference, _ = reference_outputs(zoo_dir / "resnet.onnx", result.manifest, inputs)
    return result.package, reference[0]


def package_environ(**env) -> dict:
    """This environment without the switches back to TVM's runtime (ANSOR_THREAD_POOL, ANSOR_WORKSPACE), plus `env`."""
    environ = {name: value for name, value in os.environ.items()
               if name not in ("ANSOR_THREAD_POOL", "ANSOR_WORKSPACE")}
    return {**environ, **env}


def run(package: Path, mode: str, *more: Path, **env) -> dict:
    environ = package_environ(**{"REPO": str(REPO), "TVM_NUM_THREADS": "2", **env})
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(package), mode, *map(str, more)], capture_output=True,
                          text=True, env=environ, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def matches(report: dict, reference: np.ndarray) -> bool:
    return np.allclose(np.array(report["output"], dtype=np.float32), reference, rtol=1e-4, atol=1e-5)


def test_model_so_hides_the_kernels_parallel_runtime_pointers(tuned_resnet):
    package, _ = tuned_resnet
    dynamic = subprocess.run(["nm", "-D", str(package / "model.so")], capture_output=True, text=True, check=True)
    every = subprocess.run(["nm", str(package / "model.so")], capture_output=True, text=True, check=True)
    for name in HIDDEN:
        assert name not in dynamic.stdout  # TVM's loader cannot find them, so it cannot point them at its pool
    assert "__TVMBackendParallelLaunch" in every.stdout  # the kernels do use one


def test_the_pool_needs_only_libc_and_no_newer_glibc_than_the_kernels(tuned_resnet):
    package, _ = tuned_resnet
    info = read_elf(package / "model.so")
    assert info.needed == ["libc.so.6"]
    # glibc 2.34 moved pthread_create/join into libc under a new version: the pool binds their first ones
    assert newest(info.versions["libc.so.6"], "GLIBC") == "2.3.2"  # __register_atfork (pthread_atfork)


def test_the_pool_runs_the_kernels_and_tvms_pool_gives_the_same_outputs(tuned_resnet):
    package, reference = tuned_resnet
    ours = run(package, "plain")
    theirs = run(package, "plain", ANSOR_THREAD_POOL="tvm")
    assert ours["threads"].count("ansor-pool") == 1  # TVM_NUM_THREADS=2: the caller and one worker
    assert "ansor-pool" not in theirs["threads"]
    assert matches(ours, reference) and matches(theirs, reference)
    assert ours["output"] == theirs["output"]  # the same kernels, split the same way


def test_the_kernels_scratch_buffers_come_from_the_package_allocator(tuned_resnet):
    package, reference = tuned_resnet
    ours = run(package, "plain")
    theirs = run(package, "plain", ANSOR_WORKSPACE="tvm")
    # Five calls after the first: the convolutions allocate in every iteration of their parallel loops, and once
    # each thread's arena has grown to what it needs (in the first call), nothing goes to the heap.
    assert ours["workspace"]["arena"] >= 5 * 10 and ours["workspace"]["heap"] == 0, ours["workspace"]
    assert theirs["workspace"] == {"arena": 0, "heap": 0, "grown": 0}
    assert matches(ours, reference) and ours["output"] == theirs["output"]


def test_more_threads_than_cores(tuned_resnet):
    package, reference = tuned_resnet
    report = run(package, "plain", TVM_NUM_THREADS="5")
    assert report["threads"].count("ansor-pool") == 4
    assert matches(report, reference)


def test_a_forked_child_starts_its_own_workers(tuned_resnet):
    package, reference = tuned_resnet
    report = run(package, "fork")
    assert report["child_status"] == 0 and report["same"] and matches(report, reference)


def test_two_threads_calling_at_once(tuned_resnet):
    package, reference = tuned_resnet
    report = run(package, "concurrent")
    assert report["same"] and matches(report, reference)


def test_several_packages_in_one_process_each_run_their_own_pool(tuned_resnet, tmp_path):
    package, reference = tuned_resnet
    copies = [shutil.copytree(package, tmp_path / f"copy{index}") for index in range(3)]
    report = run(package, "several", *copies)
    assert report["same"] and matches(report, reference)
    assert report["threads_after"].count("ansor-pool") == 4  # nothing shared between the libraries


def test_the_runner_exits_cleanly_after_parallel_kernels(tuned_resnet):
    package, _ = tuned_resnet
    proc = subprocess.run([str(package / "bin" / "ansor_runner"), "--threads", "2", "--repeat", "20"],
                          capture_output=True, text=True, env=package_environ(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]  # the workers end before the runner unloads model.so
    assert "latency_ms" in proc.stdout


def test_tuning_candidates_are_linked_with_the_pool(zoo_dir):
    """Tuning times each kernel with the launch cost it will have in the package."""
    from ansor_build.backend.measure import make_measurer
    from ansor_build.backend.records import import_intrinsics
    from tvm.s_tir import meta_schedule as ms

    prepared = prepare(zoo_dir / "mlp.onnx", load_target(HOST_TARGET), tuned=True)
    import_intrinsics("x86")
    measurer = make_measurer(None, "x86", 1)
    task = prepared.ms_tasks[0]
    built = measurer.builder.build([ms.builder.BuilderInput(task.dispatched[0], task.target)])
    assert built[0].error_msg is None
    artifact = Path(built[0].artifact_path)
    try:
        assert artifact.suffix == ".so" and b"ansor-pool" in artifact.read_bytes()
    finally:
        shutil.rmtree(artifact.parent)

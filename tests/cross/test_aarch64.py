"""aarch64 packages: cross-built on this x86-64 host, run under qemu-aarch64, compared with x86 and onnxruntime."""

from __future__ import annotations

import json
import subprocess

import pytest

from ansor_build import zoo
from ansor_build.check import ATOL, RTOL, check_package, compare, reference_outputs, sample_inputs
from ansor_build.package import layout
from ansor_build.package.elf import read_elf
from ansor_build.runner.run import package_emulator, run_runner
from cross_tools import DIFFS, require_tool

pytestmark = pytest.mark.cross


@pytest.fixture(autouse=True)
def _tools():
    require_tool("aarch64-linux-gnu-g++", "apt-get install g++-aarch64-linux-gnu")
    require_tool("qemu-aarch64", "apt-get install qemu-user")


@pytest.mark.parametrize("name", zoo.NAMES)
def test_aarch64_package_under_qemu_matches_x86_and_onnxruntime(cross_package, packages, zoo_dir, name):
    package = cross_package("aarch64", name)
    manifest = json.loads((package / layout.MANIFEST).read_text())
    arrays = sample_inputs(manifest)
    emulated, _ = run_runner(package, arrays, emulator=package_emulator(package, manifest))
    native, _ = run_runner(packages[name], arrays)
    reference, _ = reference_outputs(zoo_dir / f"{name}.onnx", manifest, arrays)
    vs_ort, _, ok = compare(emulated, reference)
    assert ok, f"aarch64 vs onnxruntime: max abs diff {vs_ort:.2e} (tolerance {ATOL:g} + {RTOL:g}*|ref|)"
    vs_x86, _, same = compare(emulated, native)
    assert same, f"aarch64 vs x86: max abs diff {vs_x86:.2e}"
    DIFFS[f"{name}: aarch64 (qemu) vs onnxruntime"] = vs_ort
    DIFFS[f"{name}: aarch64 (qemu) vs x86"] = vs_x86


def test_check_command_runs_aarch64_package_under_its_emulator(cross_package, zoo_dir):
    result = check_package(cross_package("aarch64", "resnet"), zoo_dir / "resnet.onnx")
    assert result.ok, result.line()
    assert result.emulator == "qemu-aarch64" and "under qemu-aarch64" in result.line()


def test_aarch64_package_files_are_aarch64_and_need_only_the_package(cross_package, tmp_path):
    package = cross_package("aarch64", "convnet")
    manifest = json.loads((package / layout.MANIFEST).read_text())
    assert manifest["runtime"]["libs"] == ["runtime/libtvm_ffi.so", "runtime/libtvm_runtime.so"]
    for rel in ("model.so", "bin/ansor_runner", "runtime/libtvm_runtime.so", "runtime/libtvm_ffi.so"):
        info = read_elf(package / rel)
        assert (info.machine, info.bits) == ("aarch64", 64), rel
    requirements = manifest["requirements"]
    assert requirements["arch"] == "aarch64" and requirements["triple"] == "aarch64-linux-gnu"
    assert requirements["glibc"] and "libtvm_runtime.so" not in requirements["system_libraries"]
    assert requirements["files"]["model.so"]["glibc"] == "2.17"  # aarch64's first glibc, thread pool included
    assert set(requirements["files"]) == {"model.so", "bin/ansor_runner", "runtime/libtvm_runtime.so",
                                          "runtime/libtvm_ffi.so"}
    # The runner finds its runtime through $ORIGIN: an empty environment and a copied package are enough.
    moved = tmp_path / "elsewhere"
    subprocess.run(["cp", "-r", str(package), str(moved)], check=True)
    qemu = require_tool("qemu-aarch64", "apt-get install qemu-user")
    proc = subprocess.run(["env", "-i", qemu, "-L", "/usr/aarch64-linux-gnu",
                           str(moved / "bin/ansor_runner"), "--repeat", "1"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "output 0 name=output shape=[1,10]" in proc.stdout


@pytest.mark.parametrize("preset", ["aarch64-cortex-a72", "aarch64-cortex-a76", "aarch64-neoverse-n1"])
def test_cpu_presets_build_and_match_under_qemu(cross_package, zoo_dir, preset):
    package = cross_package(preset, "convnet")
    manifest = json.loads((package / layout.MANIFEST).read_text())
    assert manifest["target"]["tvm"]["mcpu"] == preset.split("-", 1)[1]
    result = check_package(package, zoo_dir / "convnet.onnx")
    assert result.ok, result.line()


def test_wheel_runtime_is_cached_with_a_readable_key(cross_package):
    import hashlib

    from ansor_build.cache import cache_dir

    package = cross_package("aarch64", "mlp")
    keys = [path.read_text() for path in (cache_dir() / "wheels").glob("*/key.txt")]
    runtime = hashlib.sha256((package / "runtime/libtvm_runtime.so").read_bytes()).hexdigest()
    entry = next(text for text in keys if runtime in text)
    assert "requirement: apache-tvm==" in entry and "platforms: manylinux_2_28_aarch64" in entry
    assert "wheel: apache_tvm-" in entry and "aarch64" in entry.split("wheel: ")[1].splitlines()[0]
    assert len(entry.split("wheel sha256: ")[1].split()[0]) == 64


def test_two_aarch64_builds_are_byte_identical(zoo_dir, tmp_path):
    from ansor_build.build import build_package
    from helpers import PRESETS

    digests = []
    for run in ("a", "b"):
        package = build_package(zoo_dir / "mlp.onnx", PRESETS / "aarch64.yaml", tmp_path / run / "pkg").package
        digests.append({str(p.relative_to(package)): p.read_bytes() for p in package.rglob("*") if p.is_file()})
    assert digests[0] == digests[1]


def test_run_command_points_foreign_packages_to_check(cross_package):
    from helpers import one_line_error, run_cli

    package = cross_package("aarch64", "mlp")
    line = one_line_error(run_cli("run", package))
    assert f"{package}: this aarch64 package runs on its device" in line and "ansor-build check" in line


def test_aarch64_prepacked_package_under_qemu_matches_onnxruntime(zoo_dir, tmp_path):
    """Weights packed at build time on the x86 host for an aarch64 kernel's layout (see tests/tvm/test_prepack.py)."""
    from ansor_build.build import build_package, prepare
    from ansor_build.target import load_target
    from ansor_build.tuning.driver import write_records_file
    from helpers import PRESETS
    from prepack_records import layout_rewriting_records

    target = load_target(PRESETS / "aarch64.yaml")
    prepared = prepare(zoo_dir / "resnet.onnx", target, tuned=True)
    records = tmp_path / "records.json"
    write_records_file(records, target.tuned_tvm(), [t.key for t in prepared.tasks], layout_rewriting_records(prepared))
    result = build_package(zoo_dir / "resnet.onnx", PRESETS / "aarch64.yaml", tmp_path / "resnet", records_file=records)
    assert result.manifest["tuning"]["records"] == 3  # the direct convs: stem, stride 2, 1x1 projection
    check = check_package(result.package, zoo_dir / "resnet.onnx")
    assert check.ok, check.line()

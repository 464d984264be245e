"""`ansor-build profile`: each kernel of a package timed alone, against one whole call."""

from __future__ import annotations

import json

import pytest

from helpers import HOST_TARGET, one_line_error, run_cli

pytestmark = pytest.mark.tvm


@pytest.fixture(scope="module")
def bytecode(zoo_dir, tmp_path_factory):
    """resnet and mlp built for the host with `runtime.vm: bytecode`, whose calls the VM profiler sees."""
    from ansor_build.build import build_package

    out = tmp_path_factory.mktemp("bytecode")
    target = out / "host-bytecode.yaml"
    target.write_text(f"extends: {HOST_TARGET}\nname: host-bytecode\nruntime: {{vm: bytecode}}\n")
    return {name: build_package(zoo_dir / f"{name}.onnx", target, out / name).package for name in ("resnet", "mlp")}


def test_profile_lists_every_kernel_the_model_launches(bytecode):
    proc = run_cli("profile", bytecode["resnet"], "--repeat", "20", "--rounds", "2", "--json", check=True)
    profile = json.loads(proc.stdout)
    manifest = json.loads((bytecode["resnet"] / "manifest.json").read_text())
    assert manifest["runtime"]["vm"] == "bytecode"
    names = {k["name"] for k in profile["kernels"]}
    # every launched kernel is one of the model's tasks (reshapes are VM builtins, not kernels)
    assert names <= {t["name"] for t in manifest["tasks"]}
    assert sum("conv2d" in name for name in names) == sum("conv2d" in t["name"] for t in manifest["tasks"]) == 6
    assert all(k["calls"] == 1 and k["us"] > 0 for k in profile["kernels"])
    assert profile["kernels_us"] == pytest.approx(sum(k["total_us"] for k in profile["kernels"]), abs=0.01)
    assert profile["model_us"] > 0 and profile["threads"]
    assert [k["total_us"] for k in profile["kernels"]] == sorted((k["total_us"] for k in profile["kernels"]),
                                                                 reverse=True)


def test_profile_table_ends_with_overhead_and_model_rows(bytecode):
    proc = run_cli("profile", bytecode["mlp"], "--repeat", "20", "--rounds", "2", check=True)
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split()[:2] == ["kernel", "calls"]
    assert lines[-2].startswith("VM and thread-pool overhead") and lines[-1].startswith("model (one call)")
    assert any(line.startswith("fused_matmul") for line in lines)


def test_profile_refuses_packages_for_another_device(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "manifest.json").write_text(json.dumps({"format": 1, "target": {"arch": "aarch64", "device": "cpu"},
                                                       "files": {}}))
    error = one_line_error(run_cli("profile", package))
    assert "aarch64" in error and "this machine" in error


def test_profile_names_the_setting_a_compiled_vm_package_needs(packages):
    """CPU packages run the compiled VM by default: the profiler cannot see into it, and says what to change."""
    assert json.loads((packages["mlp"] / "manifest.json").read_text())["runtime"]["vm"] == "compiled"
    error = one_line_error(run_cli("profile", packages["mlp"]))
    assert str(packages["mlp"]) in error and "compiled" in error and "vm: bytecode" in error


def test_compiled_and_bytecode_vm_packages_compute_the_same(packages, bytecode):
    import numpy as np

    from ansor_build.package import loader

    compiled, interpreted = loader.load(packages["resnet"]), loader.load(bytecode["resnet"])
    arrays = compiled.default_inputs()
    np.testing.assert_array_equal(compiled(*arrays)[0], interpreted(*arrays)[0])
    assert (packages["resnet"] / "model.so").read_bytes() != (bytecode["resnet"] / "model.so").read_bytes()

"""`ansor-build profile`: each kernel of a package timed alone, against one whole call."""

from __future__ import annotations

import json

import pytest

from helpers import one_line_error, run_cli

pytestmark = pytest.mark.tvm


def test_profile_lists_every_kernel_the_model_launches(packages):
    proc = run_cli("profile", packages["resnet"], "--repeat", "20", "--rounds", "2", "--json", check=True)
    profile = json.loads(proc.stdout)
    manifest = json.loads((packages["resnet"] / "manifest.json").read_text())
    names = {k["name"] for k in profile["kernels"]}
    # every launched kernel is one of the model's tasks (reshapes are VM builtins, not kernels)
    assert names <= {t["name"] for t in manifest["tasks"]}
    assert sum("conv2d" in name for name in names) == sum("conv2d" in t["name"] for t in manifest["tasks"]) == 6
    assert all(k["calls"] == 1 and k["us"] > 0 for k in profile["kernels"])
    assert profile["kernels_us"] == pytest.approx(sum(k["total_us"] for k in profile["kernels"]), abs=0.01)
    assert profile["model_us"] > 0 and profile["threads"]
    assert [k["total_us"] for k in profile["kernels"]] == sorted((k["total_us"] for k in profile["kernels"]),
                                                                 reverse=True)


def test_profile_table_ends_with_overhead_and_model_rows(packages):
    proc = run_cli("profile", packages["mlp"], "--repeat", "20", "--rounds", "2", check=True)
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

"""Real builds of every zoo model: package contents, fresh-process correctness, determinism."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import numpy as np
import pytest

from ansor_build import zoo
from ansor_build.check import ATOL, RTOL, check_package
from ansor_build.package import layout
from ansor_build.target import load_target
from helpers import HOST_TARGET, one_line_error, run_cli

pytestmark = pytest.mark.tvm


@pytest.mark.parametrize("name", zoo.NAMES)
def test_package_matches_onnxruntime_in_fresh_process(packages, zoo_dir, name):
    result = check_package(packages[name], zoo_dir / f"{name}.onnx")
    assert result.ok, result.line()
    assert result.max_abs_diff < ATOL + RTOL  # stated tolerance: |tvm - ort| <= 1e-4 + 1e-3 * |ort|


@pytest.mark.parametrize("name", zoo.NAMES)
def test_package_files_and_manifest(packages, zoo_dir, name):
    package = packages[name]
    manifest = json.loads((package / "manifest.json").read_text())
    expected = layout.package_files(load_target(HOST_TARGET))
    on_disk = sorted(str(p.relative_to(package)) for p in package.rglob("*") if p.is_file())
    assert on_disk == sorted(expected)
    assert sorted(manifest["files"]) == sorted(f for f in expected if f != "manifest.json")
    for rel, entry in manifest["files"].items():
        data = (package / rel).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    model_bytes = (zoo_dir / f"{name}.onnx").read_bytes()
    assert manifest["model"]["sha256"] == hashlib.sha256(hashlib.sha256(model_bytes).digest()).hexdigest()
    assert manifest["format"] == 1
    assert manifest["target"]["tvm"]["mcpu"] == "haswell"
    assert manifest["inputs"][0]["name"] == "input" and manifest["outputs"][0]["name"] == "output"
    assert manifest["versions"]["apache-tvm"].startswith("0.27")
    assert manifest["tasks"] and all(len(t["key"]) == 16 for t in manifest["tasks"])
    assert not list(package.parent.glob(f".{name}.tmp-*"))


def test_cpp_runner_in_empty_environment_matches_python_loader(packages, tmp_path):
    """The runner needs nothing but the package: run it under `env -i` and compare with the Python loader."""
    package = packages["resnet"]
    from ansor_build.package import loader

    python_out = loader.load(package)(*loader.load(package).default_inputs())
    proc = subprocess.run(["env", "-i", str(package / "bin/ansor_runner"), "--output-dir", str(tmp_path),
                           "--repeat", "3"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "latency_ms median=" in proc.stdout
    runner_out = np.load(tmp_path / "output_0.npy")
    np.testing.assert_allclose(runner_out, python_out[0], rtol=1e-5, atol=1e-6)


def test_run_command_prints_outputs_and_latency(packages):
    proc = run_cli("run", packages["mlp"], "--repeat", "5", "--json", check=True)
    result = json.loads(proc.stdout)
    assert result["outputs"][0]["shape"] == [1, 10]
    assert result["latency"]["repeat"] == 5 and result["latency"]["median_ms"] > 0


def test_two_clean_builds_are_byte_identical(zoo_dir, tmp_path):
    """Different output directories, different working directories, fresh runner caches: same bytes."""
    digests = []
    for run in ("a", "b"):
        work = tmp_path / run
        work.mkdir()
        env = {"ANSOR_BUILD_CACHE_DIR": str(work / "cache")}
        run_cli("build", zoo_dir / "transformer.onnx", "--target", HOST_TARGET, "-o", work / "deep" / run / "pkg",
                cwd=work, env=env, check=True)
        package = work / "deep" / run / "pkg"
        digests.append({str(p.relative_to(package)): hashlib.sha256(p.read_bytes()).hexdigest()
                        for p in sorted(package.rglob("*")) if p.is_file()})
    assert digests[0] == digests[1]


def test_inspect_json_lists_tasks_and_variant_changes_one(zoo_dir, tmp_path):
    variant = tmp_path / "convnet.onnx"
    zoo.write_model("convnet", variant, variant=1)
    plans = []
    for model in (zoo_dir / "convnet.onnx", variant):
        proc = run_cli("inspect", model, "--target", HOST_TARGET, "--json", check=True)
        plans.append(json.loads(proc.stdout))
    keys = [{t["key"] for t in plan["tasks"]} for plan in plans]
    assert len(keys[0]) == len(plans[0]["tasks"]) > 3
    assert len(keys[0] - keys[1]) == 1 and len(keys[1] - keys[0]) == 1  # exactly one layer changed
    assert all(t["weight"] >= 1 and t["name"].startswith("fused_") or t["name"] for t in plans[0]["tasks"])


def test_inspect_table(zoo_dir):
    proc = run_cli("inspect", zoo_dir / "resnet.onnx", "--target", HOST_TARGET, check=True)
    lines = proc.stdout.splitlines()
    assert "tasks" in lines[0] and lines[1].split()[:3] == ["key", "weight", "MFLOP"]
    assert len(lines) > 5


def test_dynamic_batch_needs_and_honours_shape_override(tmp_path):
    model = tmp_path / "mlp_dyn.onnx"
    zoo.write_model("mlp", model, dynamic_batch=True)
    proc = run_cli("build", model, "--target", HOST_TARGET, "-o", tmp_path / "pkg")
    assert "dim 0 is symbolic ('batch')" in proc.stderr and "--shape input=1,64" in proc.stderr
    run_cli("build", model, "--target", HOST_TARGET, "-o", tmp_path / "pkg", "--shape", "input=3,64", check=True)
    manifest = json.loads((tmp_path / "pkg" / "manifest.json").read_text())
    assert manifest["inputs"] == [{"name": "input", "shape": [3, 64], "dtype": "float32"}]
    assert manifest["outputs"][0]["shape"] == [3, 10]
    result = check_package(tmp_path / "pkg", model)
    assert result.ok, result.line()


def test_rebuild_replaces_package_atomically(zoo_dir, tmp_path):
    out = tmp_path / "pkg"
    run_cli("build", zoo_dir / "mlp.onnx", "--target", HOST_TARGET, "-o", out, check=True)
    readme = (out / "README.md").read_text()
    (out / "README.md").write_text("edited after the build")
    (out / "__pycache__").mkdir()
    (out / "__pycache__" / "loader.cpython-311.pyc").write_bytes(b"bytecode")  # `import loader` from the package
    run_cli("build", zoo_dir / "mlp.onnx", "--target", HOST_TARGET, "-o", out, check=True)
    assert (out / "README.md").read_text() == readme and not (out / "__pycache__").exists()
    assert sorted(os.listdir(tmp_path)) == ["pkg"]
    (out / "notes.txt").write_text("the user's")  # a file ansor-build did not write: the package is kept
    assert "holds files ansor-build did not write (notes.txt)" in one_line_error(
        run_cli("build", zoo_dir / "mlp.onnx", "--target", HOST_TARGET, "-o", out))
    assert (out / "notes.txt").read_text() == "the user's" and (out / "README.md").read_text() == readme

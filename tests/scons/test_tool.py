"""The SCons tool: builds, no-op rebuilds, what triggers a rebuild, cleaning, errors."""

from __future__ import annotations

import json
import os
import time

import pytest

from ansor_build import zoo

pytestmark = pytest.mark.scons

BOTH = ["build/dev/mlp", "build/dev/mobilenet"]


def test_build_noop_and_clean(project):
    first = project.scons("-j2")
    assert project.built(first) == BOTH
    for name in ("mlp", "mobilenet"):
        manifest = json.loads((project.root / "build/dev" / name / "manifest.json").read_text())
        assert manifest["target"]["name"] == "dev"
    again = project.scons()
    assert project.built(again) == []
    assert "TVM_IMPORTED=False" in again.stdout  # the tool never imports TVM into SCons
    assert project.scons("-q", check=False).returncode == 0  # question mode: everything up to date
    project.scons("-c")
    assert not (project.root / "build/dev/mlp").exists()
    assert not (project.root / "build/dev/mobilenet").exists()


def test_model_change_rebuilds_only_that_package(project):
    project.scons("-j2")
    zoo.write_model("mobilenet", project.root / "models/mobilenet.onnx", variant=1)
    assert project.built(project.scons()) == ["build/dev/mobilenet"]


def test_touching_without_change_rebuilds_nothing(project):
    project.scons("-j2")
    later = time.time() + 10
    for path in ("models/mlp.onnx", "targets/dev.yaml"):
        os.utime(project.root / path, (later, later))
    assert project.built(project.scons()) == []


def test_change_in_extended_target_file_rebuilds_all(project):
    project.scons("-j2")
    (project.root / "targets/base.yaml").write_text("extends: x86_64-avx2\ndescription: base\n"
                                                    "runtime: {threads: 2}\n")
    assert project.built(project.scons("-j2")) == BOTH
    manifest = json.loads((project.root / "build/dev/mlp/manifest.json").read_text())
    assert manifest["runtime"]["threads"] == 2


def test_switching_target_file_rebuilds(project):
    project.scons("-j2")
    (project.root / "targets/other.yaml").write_text("extends: x86_64\nname: other\n")
    assert project.built(project.scons("target=targets/other.yaml", "-j2")) == BOTH
    manifest = json.loads((project.root / "build/dev/mlp/manifest.json").read_text())
    assert manifest["target"]["tvm"]["mcpu"] == "x86-64"


def test_tool_versions_are_part_of_the_signature(project):
    project.scons("-j2", "fake_versions=tvm-1")
    assert project.built(project.scons("fake_versions=tvm-1")) == []
    assert project.built(project.scons("-j2", "fake_versions=tvm-2")) == BOTH


def test_versions_value_names_tvm_and_ansor_build(project):
    from ansor_build.backend import versions

    (project.root / "SConstruct").write_text(
        "import ansor_build\nenv = Environment(tools=['default', 'ansor'], toolpath=[ansor_build.scons_toolpath()])\n"
        "env.AnsorModel('build/x', 'models/mlp.onnx', ANSOR_TARGET='targets/dev.yaml')\n"
        "print('VERSIONS=' + env['ANSOR_VERSIONS'])\n")
    out = project.scons("-n").stdout
    line = next(line for line in out.splitlines() if line.startswith("VERSIONS="))
    assert f"apache-tvm={versions()['apache-tvm']}" in line and "ansor-build=" in line


def test_bad_target_is_a_one_line_scons_error(project):
    (project.root / "targets/dev.yaml").write_text("extends: base.yaml\ntvm: {mcpuu: x}\n")
    proc = project.scons(check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "tvm.mcpuu: unknown key; did you mean 'tvm.mcpu'?" in proc.stderr


def test_failed_build_leaves_nothing_half_written(project):
    (project.root / "models/mlp.onnx").write_bytes(b"not a model")
    proc = project.scons("-k", check=False)
    assert proc.returncode != 0
    assert "models/mlp.onnx: not a valid ONNX model" in proc.stderr
    assert not (project.root / "build/dev/mlp").exists()
    assert (project.root / "build/dev/mobilenet/manifest.json").exists()  # -k: the other package still builds


def test_external_data_file_is_a_dependency(project):
    import onnx

    path = project.root / "models/mlp.onnx"
    onnx.save_model(zoo.make_model("mlp"), str(path), save_as_external_data=True, location="mlp.weights",
                    size_threshold=0)
    assert project.built(project.scons("-j2")) == BOTH
    assert project.built(project.scons()) == []
    weights = project.root / "models/mlp.weights"
    data = bytearray(weights.read_bytes())
    data[0:4] = b"\0\0\0\0"
    weights.write_bytes(bytes(data))
    assert project.built(project.scons()) == ["build/dev/mlp"]

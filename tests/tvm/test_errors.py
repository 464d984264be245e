"""Bad inputs give one-line errors and leave no partial package (real builds up to the failing step)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import onnx
import pytest
from onnx import TensorProto, helper

from helpers import HOST_TARGET, one_line_error, run_cli

pytestmark = pytest.mark.tvm


def assert_no_package(out):
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def build(model, out, target=HOST_TARGET):
    return run_cli("build", model, "--target", target, "-o", out)


def test_missing_model(tmp_path):
    line = one_line_error(build(tmp_path / "nope.onnx", tmp_path / "pkg"))
    assert f"{tmp_path / 'nope.onnx'}: model file not found" in line
    assert_no_package(tmp_path / "pkg")


def test_corrupt_model(tmp_path, zoo_dir):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes((zoo_dir / "convnet.onnx").read_bytes()[:200])
    line = one_line_error(build(bad, tmp_path / "pkg"))
    assert f"{bad}: not a valid ONNX model" in line
    assert_no_package(tmp_path / "pkg")


def test_unsupported_operator_names_the_node(tmp_path):
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["h"], name="first"),
                               helper.make_node("Celu", ["h"], ["output"], name="the_celu")], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "celu.onnx"
    onnx.save(model, path)
    line = one_line_error(build(path, tmp_path / "pkg"))
    assert f"{path}: node 'the_celu': operator 'Celu' is not supported by TVM's ONNX importer" in line
    assert_no_package(tmp_path / "pkg")


def test_unknown_target_key(tmp_path, zoo_dir):
    target = tmp_path / "t.yaml"
    target.write_text("extends: x86_64\ntvm: {mcpuu: haswell}\n")
    line = one_line_error(build(zoo_dir / "mlp.onnx", tmp_path / "pkg", target))
    assert f"{target}: tvm.mcpuu: unknown key; did you mean 'tvm.mcpu'?" in line
    assert_no_package(tmp_path / "pkg")


def test_wrong_type_in_target(tmp_path, zoo_dir):
    target = tmp_path / "t.yaml"
    target.write_text("extends: x86_64\ntvm: {num-cores: two}\n")
    line = one_line_error(build(zoo_dir / "mlp.onnx", tmp_path / "pkg", target))
    assert "tvm.num-cores: expected an integer, found string 'two'" in line


def test_unwritable_output(tmp_path, zoo_dir):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    line = one_line_error(build(zoo_dir / "mlp.onnx", blocker / "pkg"))
    assert "cannot create output directory" in line


def test_missing_compiler_names_debian_package(tmp_path, zoo_dir):
    target = tmp_path / "t.yaml"
    target.write_text("extends: x86_64\ntoolchain: {cxx: no-such-g++, debian_package: g++-99}\n")
    line = one_line_error(build(zoo_dir / "mlp.onnx", tmp_path / "pkg", target))
    assert "C++ compiler 'no-such-g++' not found on PATH; install it with: apt-get install g++-99" in line
    assert_no_package(tmp_path / "pkg")


def test_link_failure_keeps_log_and_leaves_no_package(tmp_path, zoo_dir):
    target = tmp_path / "t.yaml"
    target.write_text("extends: x86_64\ntoolchain: {flags: [-Wl,--no-such-linker-flag]}\n")
    line = one_line_error(build(zoo_dir / "mlp.onnx", tmp_path / "pkg", target))
    assert "linking model.so failed" in line and "full log:" in line
    assert (tmp_path / "pkg.link.log").read_text()
    assert_no_package(tmp_path / "pkg")


def test_failed_rebuild_keeps_previous_package(tmp_path, zoo_dir):
    out = tmp_path / "pkg"
    run_cli("build", zoo_dir / "mlp.onnx", "--target", HOST_TARGET, "-o", out, check=True)
    before = (out / "model.so").read_bytes()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    one_line_error(build(bad, out))
    assert (out / "model.so").read_bytes() == before


def test_sigterm_mid_build_leaves_no_partial_package(tmp_path, zoo_dir):
    out = tmp_path / "pkg"
    proc = subprocess.Popen([sys.executable, "-m", "ansor_build", "build", str(zoo_dir / "resnet.onnx"), "--target",
                             str(HOST_TARGET), "-o", str(out)], env={"ANSOR_BUILD_CACHE_DIR": str(tmp_path / "c"),
                                                                     "PATH": "/usr/bin:/bin"},
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".pkg.tmp-*")):
        time.sleep(0.02)
    assert list(tmp_path.glob(".pkg.tmp-*")), "the build never reached the packaging step"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    assert_no_package(out)

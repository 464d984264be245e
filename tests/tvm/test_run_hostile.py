"""`run`, `check`, the package's loader.py and bin/ansor_runner on damaged packages, bad `--input` files, models with
empty outputs and models that are not the package's: one error line each, never a traceback or a signal death."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ansor_build import zoo
from ansor_build.build import build_package
from ansor_build.errors import AnsorError
from helpers import HOST_TARGET, one_line_error, run_cli

pytestmark = pytest.mark.tvm


def _save(graph, path):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _value(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def _const(name, values, dtype):
    return numpy_helper.from_array(np.array(values, dtype), name)


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """(model, package) of the zoo MLP (input float32[1, 64] -> output float32[1, 10]), built once; tests copy it."""
    root = tmp_path_factory.mktemp("mlp")
    model = root / "mlp.onnx"
    zoo.write_model("mlp", model)
    return model, build_package(model, HOST_TARGET, root / "pkg").package


@pytest.fixture
def pkg(mlp, tmp_path):
    """A private copy of the MLP package, free to damage."""
    return shutil.copytree(mlp[1], tmp_path / "pkg")


def _truncate(path, size):
    path.write_bytes(path.read_bytes()[:size])


def _manifest_size(package, name):
    return json.loads((package / "manifest.json").read_text())["files"][name]["size"]


# --- 1. a damaged package: checked against its manifest before anything maps model.so ---------------------------

def test_run_truncated_model_so_is_one_line_not_sigbus(pkg):
    _truncate(pkg / "model.so", 50_000)  # before the fix: SIGBUS (exit 135), no message
    line = one_line_error(run_cli("run", pkg, "--repeat", "1"))
    assert line == (f"ansor-build: error: {pkg}/model.so: truncated (50000 bytes, manifest says "
                    f"{_manifest_size(pkg, 'model.so')}); rebuild the package or run `ansor-build verify {pkg}`")


def test_run_deleted_model_so_is_one_line_not_traceback(pkg):
    (pkg / "model.so").unlink()  # before the fix: a traceback (TVM's "cannot find file")
    line = one_line_error(run_cli("run", pkg))
    assert f"{pkg}/model.so: missing (the manifest lists {_manifest_size(pkg, 'model.so')} bytes); rebuild" in line


def test_run_same_size_modified_model_so_is_caught_by_its_sha256(pkg):
    data = bytearray((pkg / "model.so").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (pkg / "model.so").write_bytes(bytes(data))
    line = one_line_error(run_cli("run", pkg))
    assert f"{pkg}/model.so: modified (same size, but its sha256 is not the manifest's)" in line


@pytest.mark.parametrize("lib", ["runtime/libtvm_runtime.so", "runtime/libtvm_ffi.so"])
def test_run_truncated_runtime_library_is_one_line(pkg, lib):
    _truncate(pkg / lib, 1000)
    line = one_line_error(run_cli("run", pkg))
    assert f"{pkg}/{lib}: truncated (1000 bytes, manifest says {_manifest_size(pkg, lib)})" in line


def test_check_truncated_model_so_is_one_line(pkg, mlp):
    _truncate(pkg / "model.so", 0)
    line = one_line_error(run_cli("check", pkg, "--model", mlp[0]))
    assert f"{pkg}/model.so: truncated (0 bytes, manifest says" in line


def test_package_loader_py_alone_reports_truncated_model_so(pkg):
    """The package's own loader.py (no ansor-build on the device) makes the same check and says it on one line."""
    tree = ast.parse((pkg / "loader.py").read_text())
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    imported += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert not [name for name in imported if name.startswith("ansor_build")]
    _truncate(pkg / "model.so", 50_000)
    proc = subprocess.run([sys.executable, "loader.py", "--repeat", "1"], cwd=pkg, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {pkg}/model.so: truncated (50000 bytes, manifest says {_manifest_size(pkg, 'model.so')}); "
        f"rebuild the package or run `ansor-build verify {pkg}`"]


@pytest.mark.parametrize("size", [0, 50_000])
def test_runner_truncated_model_so_is_one_line_not_sigbus(pkg, size):
    _truncate(pkg / "model.so", size)
    proc = subprocess.run(["env", "-i", str(pkg / "bin/ansor_runner"), "--repeat", "1"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1, f"exit {proc.returncode}: {proc.stderr}"  # before the fix: SIGBUS (135)
    real = os.path.realpath(pkg)
    assert proc.stderr.strip().splitlines() == [
        f"ansor_runner: error: {real}/model.so: truncated ({size} bytes, manifest says "
        f"{_manifest_size(pkg, 'model.so')}); rebuild the package or run `ansor-build verify {real}`"]


# --- 2. run --input: one line naming the file or input, and what the input takes -----------------------------

def _input_cases(tmp_path):
    np.save(tmp_path / "good.npy", np.zeros((1, 64), "float32"))
    np.save(tmp_path / "shape.npy", np.zeros((2, 64), "float32"))
    np.save(tmp_path / "dtype.npy", np.zeros((1, 64), "int32"))
    np.savez(tmp_path / "arrays.npz", input=np.zeros((1, 64), "float32"))
    (tmp_path / "text.npy").write_text("1 2 3\n")
    (tmp_path / "cut.npy").write_bytes((tmp_path / "good.npy").read_bytes()[:150])
    np.save(tmp_path / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    takes = "input 'input' takes float32[1, 64]"
    return {
        "unknown_name": (["nope=good.npy"], "--input nope=good.npy: unknown input 'nope' "
                                            "(the package's inputs: input float32[1, 64])"),
        "missing_file": (["missing.npy"], f"missing.npy: file not found ({takes} as a .npy file)"),
        "directory": (["."], f".: cannot read it: Is a directory ({takes} as a .npy file)"),
        "not_npy": (["text.npy"], f"text.npy: not a .npy file ({takes}, saved with numpy.save)"),
        "npz": (["arrays.npz"], f"arrays.npz: a .npz archive ({takes}, saved with numpy.save)"),
        "truncated_npy": (["cut.npy"], f"cut.npy: damaged .npy file ("),
        "wrong_shape": (["input=shape.npy"], f"shape.npy: holds float32[2, 64], but {takes}"),
        "wrong_dtype": (["dtype.npy"], f"dtype.npy: holds int32[1, 64], but {takes}"),
        "object_array": (["pickled.npy"], f"pickled.npy: holds object[1], but {takes}"),
        "too_many": (["good.npy", "good.npy"], "--input good.npy: the package takes 1 input(s) "
                                               "(input float32[1, 64]); name the input as NAME=FILE.npy"),
        "twice": (["input=good.npy", "input=good.npy"], "--input input=good.npy: input 'input' is given twice"),
    }


CASES = ["unknown_name", "missing_file", "directory", "not_npy", "npz", "truncated_npy", "wrong_shape", "wrong_dtype",
         "object_array", "too_many", "twice"]


@pytest.mark.parametrize("case", CASES)
def test_run_bad_input_is_one_line_naming_file_and_input(mlp, tmp_path, case):
    items, expected = _input_cases(tmp_path)[case]
    args = [arg for item in items for arg in ("--input", item)]
    line = one_line_error(run_cli("run", mlp[1], *args, "--repeat", "1", cwd=tmp_path))
    assert line.startswith(f"ansor-build: error: {expected}"), line


def test_run_good_input_by_name_and_position(mlp, tmp_path):
    np.save(tmp_path / "x.npy", np.full((1, 64), 0.5, "float32"))
    by_name = run_cli("run", mlp[1], "--input", "input=x.npy", "--repeat", "0", "--json", cwd=tmp_path, check=True)
    by_position = run_cli("run", mlp[1], "--input", "x.npy", "--repeat", "0", "--json", cwd=tmp_path, check=True)
    assert json.loads(by_name.stdout)["outputs"] == json.loads(by_position.stdout)["outputs"]


# --- 3. zero-size outputs: build, run, check and the runner ----------------------------------------------------

@pytest.fixture(scope="module")
def empty_models(tmp_path_factory):
    """{name: (model, package)}: `slice` gives an empty float32[2, 0] output (Slice 2:2) besides y = Relu(x);
    `nms` is a NonMaxSuppression whose score threshold no box passes, so it selects int64[0, 3]."""
    root = tmp_path_factory.mktemp("empty")
    slice_model = _save(helper.make_graph(
        [helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["empty"]), helper.make_node("Relu", ["x"], ["y"])],
        "slice", [_value("x", [2, 4])], [_value("empty", [2, 0]), _value("y", [2, 4])],
        [_const("starts", [2], "int64"), _const("ends", [2], "int64"), _const("axes", [1], "int64")]),
        root / "slice.onnx")
    nms_model = _save(helper.make_graph(
        [helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_out", "iou", "threshold"], ["selected"])],
        "nms", [_value("boxes", [1, 4, 4]), _value("scores", [1, 1, 4])],
        [_value("selected", ["n", 3], TensorProto.INT64)],
        [_const("max_out", [2], "int64"), _const("iou", [0.5], "float32"), _const("threshold", [100.0], "float32")]),
        root / "nms.onnx")
    return {name: (model, build_package(model, HOST_TARGET, root / name).package)
            for name, model in (("slice", slice_model), ("nms", nms_model))}


@pytest.mark.parametrize("name", ["slice", "nms"])
def test_run_zero_size_output(empty_models, tmp_path, name):
    package = empty_models[name][1]
    proc = run_cli("run", package, "--repeat", "2", "--save", tmp_path / "out.npz")
    assert proc.returncode == 0, proc.stderr  # before the fix: a traceback (min of an empty array)
    first = proc.stdout.splitlines()[0]
    assert first == ("output empty: float32[2, 0] empty" if name == "slice" else "output selected: int64[0, 3] empty")
    with np.load(tmp_path / "out.npz") as saved:
        assert saved["output_0"].shape == ((2, 0) if name == "slice" else (0, 3))
    summary = json.loads(run_cli("run", package, "--repeat", "0", "--json", check=True).stdout)
    assert summary["outputs"][0]["min"] is None and summary["outputs"][0]["mean"] is None


@pytest.mark.parametrize("name", ["slice", "nms"])
def test_check_zero_size_output(empty_models, name):
    model, package = empty_models[name]
    proc = run_cli("check", package, "--model", model)
    assert proc.returncode == 0, proc.stderr  # before the fix: the package's loader died on its summary
    assert proc.stdout.startswith(f"{package}: OK vs onnxruntime"), proc.stdout


def test_runner_zero_size_output(empty_models, tmp_path):
    package = empty_models["slice"][1]
    proc = subprocess.run(["env", "-i", str(package / "bin/ansor_runner"), "--output-dir", str(tmp_path),
                           "--repeat", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "output 0 name=empty shape=[2,0] dtype=float32 min=nan max=nan mean=nan" in proc.stdout
    assert np.load(tmp_path / "output_0.npy").shape == (2, 0)


# --- 4. check --model with another model: one line naming both, before the package runs -------------------------

def _mlp_like(path, outputs, input_shape=(1, 64)):
    """A model with the MLP's input ('input', float32[1, 64] unless told) and `outputs`: [(name, width)]."""
    nodes, weights = [], []
    for index, (name, width) in enumerate(outputs):
        nodes.append(helper.make_node("MatMul", ["input", f"w{index}"], [name]))
        weights.append(_const(f"w{index}", np.ones((input_shape[-1], width)), "float32"))
    return _save(helper.make_graph(nodes, "other", [_value("input", list(input_shape))],
                                   [_value(name, [input_shape[0], width]) for name, width in outputs], weights), path)


OTHER_MODELS = {
    "output_name": ([("logits", 10)], "outputs differ: the model's are logits float32[1, 10]; "
                                      "the package's are output float32[1, 10]"),
    "output_count": ([("output", 10), ("extra", 3)], "outputs differ: the model's are output float32[1, 10], "
                                                     "extra float32[1, 3]; the package's are output float32[1, 10]"),
    "output_shape": ([("output", 12)], "outputs differ: the model's are output float32[1, 12]; "
                                       "the package's are output float32[1, 10]"),
}


@pytest.mark.parametrize("case", sorted(OTHER_MODELS))
def test_check_with_model_of_other_outputs_names_both(mlp, tmp_path, case):
    outputs, problem = OTHER_MODELS[case]
    other = _mlp_like(tmp_path / "other.onnx", outputs)
    line = one_line_error(run_cli("check", mlp[1], "--model", other))  # before the fix: a traceback, or MISMATCH
    assert line == (f"ansor-build: error: {other} does not match package {mlp[1]} (built from mlp.onnx): {problem}; "
                    f"check a package against the model it was built from")


def test_check_with_model_of_other_inputs_names_both(mlp, tmp_path):
    other = _mlp_like(tmp_path / "other.onnx", [("output", 10)], input_shape=(1, 32))
    line = one_line_error(run_cli("check", mlp[1], "--model", other))
    assert (f"{other} does not match package {mlp[1]} (built from mlp.onnx): inputs differ: the model's are "
            f"input float32[1, 32]; the package's are input float32[1, 64]") in line


def test_check_with_model_onnxruntime_cannot_load(mlp, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(mlp[0].read_bytes()[:300])
    line = one_line_error(run_cli("check", mlp[1], "--model", bad))
    assert line.startswith(f"ansor-build: error: {bad}: onnxruntime cannot load it: "), line
    line = one_line_error(run_cli("check", mlp[1], "--model", tmp_path / "missing.onnx"))
    assert line == f"ansor-build: error: {tmp_path / 'missing.onnx'}: model file not found"


def test_check_onnxruntime_run_failure_is_one_line(mlp):
    from ansor_build.check import reference_run, reference_session

    manifest = json.loads((mlp[1] / "manifest.json").read_text())
    session = reference_session(mlp[0], manifest)
    with pytest.raises(AnsorError) as err:
        reference_run(session, mlp[0], manifest, [np.zeros((1, 64), "float64")])  # onnxruntime refuses float64
    message = str(err.value)
    assert message.startswith(f"{mlp[0]}: onnxruntime failed to run it: ") and "\n" not in message, message


def test_check_with_model_of_same_signature_still_runs(mlp, tmp_path):
    """A model with the package's signature but other weights is compared, not refused: MISMATCH, exit 1."""
    other = _mlp_like(tmp_path / "other.onnx", [("output", 10)])
    proc = run_cli("check", mlp[1], "--model", other)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.startswith(f"{mlp[1]}: MISMATCH vs onnxruntime"), proc.stdout


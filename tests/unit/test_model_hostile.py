"""Hostile models and shapes: every problem is one error line naming the file, input or tensor, what was found and
what is allowed; nothing outside the model's directory is read (onnx only, no TVM)."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ansor_build import zoo
from ansor_build.errors import InputError
from ansor_build.explain import explain
from ansor_build.model import MAX_ELEMENTS, MAX_RANK, external_data_files, load_model, parse_shapes
from helpers import HOST_TARGET, one_line_error, run_cli


def relu_model(path, dims, elem_type=TensorProto.FLOAT, op="Relu"):
    """A one-node model whose input `x` has the ONNX dims `dims` (ints, strings for dim_param, None: unknown)."""
    graph = helper.make_graph([helper.make_node(op, ["x", "x"][:2 if op == "Add" else 1], ["y"], name="n")], "g",
                              [helper.make_tensor_value_info("x", elem_type, dims)],
                              [helper.make_tensor_value_info("y", elem_type, dims)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def with_dim_values(path, values):
    """Rewrite the input's dims to raw dim_values (helper.make_tensor_value_info does not write negative ones)."""
    model = onnx.load(path)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for dim, value in zip(dims, values):
        dim.Clear()
        dim.dim_value = value
    onnx.save(model, path)
    return path


def build_error(*args) -> str:
    return one_line_error(run_cli("build", *args, "--target", HOST_TARGET, "-o", args[0].parent / "pkg"))


# --- 2. bounded shapes -------------------------------------------------------------------------------------------

def test_batch_of_1e8_is_rejected_with_the_limit(tmp_path):
    path = relu_model(tmp_path / "m.onnx", ["N", 3, 224, 224])
    line = build_error(path, "--shape", "x=100000000,3,224,224")
    assert "shape 'x=100000000,3,224,224': 15052800000000 elements" in line
    assert f"the limit is {MAX_ELEMENTS} per tensor" in line
    with pytest.raises(InputError, match=r"input 'x': shape override .*15052800000000 elements.*limit is 2147483647"):
        load_model(path, {"x": [100000000, 3, 224, 224]})  # the library checks what it is given, too
    assert load_model(path, {"x": [16, 3, 224, 224]}).inputs[0].shape == (16, 3, 224, 224)


def test_huge_single_dim_is_rejected():
    with pytest.raises(InputError, match=r"dim 0 is 4294967296; the limit is 2147483647"):
        parse_shapes("x=4294967296")
    with pytest.raises(InputError, match=r"dim 0 is 9{21}\.\.\.; dims must be from 1 to"):
        parse_shapes("x=" + "9" * 5000)  # no 4300-digit int() error


def test_model_declaring_a_dim_of_2_pow_40_is_rejected(tmp_path):
    path = relu_model(tmp_path / "m.onnx", [2**40, 3])
    with pytest.raises(InputError, match=r"m.onnx: input 'x' dim 0: the model fixes it to 1099511627776; "
                                         r"the limit is 2147483647"):
        load_model(path)
    path = relu_model(tmp_path / "n.onnx", [2**16, 2**16])
    with pytest.raises(InputError, match=r"input 'x': 4294967296 elements \(\[65536, 65536\]\); the limit"):
        load_model(path)


# --- 3. --shape values -------------------------------------------------------------------------------------------

def test_negative_shape_dim_is_not_called_symbolic(tmp_path):
    path = relu_model(tmp_path / "m.onnx", ["N", 3])
    line = build_error(path, "--shape", "x=-1,3")
    assert "shape 'x=-1,3': dim 0 is -1 (not a size); dims must be from 1 to 2147483647" in line
    assert "symbolic" not in line
    with pytest.raises(InputError, match=r"dim 0 is -2 \(not a size\)") as info:
        load_model(path, {"x": [-2, 3]})
    assert "symbolic" not in str(info.value)


def test_zero_shape_dim_is_rejected(tmp_path):
    path = relu_model(tmp_path / "m.onnx", ["N", 3])
    line = build_error(path, "--shape", "x=0,3")
    assert "shape 'x=0,3': dim 0 is 0 (an empty tensor); dims must be from 1 to 2147483647" in line
    with pytest.raises(InputError, match=r"dim 0 is 0 \(an empty tensor\)"):
        load_model(path, {"x": [0, 3]})


def test_duplicate_shape_is_rejected(tmp_path):
    path = relu_model(tmp_path / "m.onnx", ["N", 3])
    line = build_error(path, "--shape", "x=1,3", "--shape", "x=2,3")
    assert "shape 'x=2,3': the shape of 'x' is already given ('x=1,3'); give each input once" in line
    with pytest.raises(InputError, match="already given"):
        parse_shapes("x=1,3 x=1,3")


def test_shape_for_unknown_input_names_the_inputs(tmp_path):
    path = relu_model(tmp_path / "m.onnx", ["N", 3])
    line = build_error(path, "--shape", "xx=1,3")
    assert f"{path}: shape given for unknown input 'xx' (model inputs: x); did you mean 'x'?" in line


@pytest.mark.parametrize("text, found", [("x=1.5,3", "dim 0 '1.5' is not an integer"),
                                         ("x=1,3e2", "dim 1 '3e2' is not an integer"),
                                         ("x=1,,3", "dim 1 '' is not an integer"),
                                         ("x=1_0,3", "dim 0 '1_0' is not an integer"),
                                         ("x", "expected NAME=D0,D1")])
def test_non_integer_dims(text, found):
    with pytest.raises(InputError, match="expected NAME=D0,D1,... with integer dims") as info:
        parse_shapes(text)
    assert found in str(info.value)


def test_absurdly_many_dims(tmp_path):
    with pytest.raises(InputError, match=f"40 dims; the limit is {MAX_RANK}"):
        parse_shapes("x=" + ",".join(["1"] * 40))
    path = relu_model(tmp_path / "m.onnx", [1] * 40)
    with pytest.raises(InputError, match=f"input 'x': the model gives it 40 dims; the limit is {MAX_RANK}"):
        load_model(path)


def test_model_zero_dim_is_rejected(tmp_path):
    path = with_dim_values(relu_model(tmp_path / "m.onnx", [1, 3]), [0, 3])
    with pytest.raises(InputError, match=r"input 'x' dim 0: the model fixes it to 0 \(an empty tensor\)"):
        load_model(path)


# --- 4. exporters' -1 dims ---------------------------------------------------------------------------------------

def test_minus_one_dim_is_dynamic_like_a_symbolic_one(tmp_path):
    path = with_dim_values(relu_model(tmp_path / "m.onnx", [1, 3]), [-1, 3])
    with pytest.raises(InputError, match=r"input 'x' dim 0 is dynamic \(-1\) in \[-1, 3\]; give a static shape, "
                                         r"e.g. --shape x=1,3"):
        load_model(path)
    assert load_model(path, {"x": [8, 3]}).inputs[0].shape == (8, 3)
    with pytest.raises(InputError, match="dim 1: the model fixes it to 3, the override gives 4"):
        load_model(path, {"x": [8, 4]})


# --- 5. external data and files that are not models --------------------------------------------------------------

def external_model(path, location, offset=None, length=None):
    """A MatMul model whose 4x4 float weight `w` is external data at `location`."""
    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        if value is not None:
            weight.external_data.add(key=key, value=str(value))
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture
def model_dir(tmp_path):
    """models/ holds the model (and w.bin, 64 bytes); secret.bin lies next to models/, outside it."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "w.bin").write_bytes(np.ones((4, 4), np.float32).tobytes())
    (tmp_path / "secret.bin").write_bytes(b"s" * 64)
    return models


@pytest.mark.parametrize("location", ["../secret.bin", "ABSOLUTE", "link.bin", "sub/../../secret.bin"])
def test_external_data_outside_the_model_directory_is_refused(model_dir, location):
    if location == "ABSOLUTE":
        location = str(model_dir.parent / "secret.bin")
    (model_dir / "link.bin").symlink_to(model_dir.parent / "secret.bin")
    path = external_model(model_dir / "m.onnx", location)
    expected = f"{path}: initializer 'w': external data '{location}' is outside the model's directory"
    for check in (lambda: load_model(path), lambda: external_data_files(path),  # the build, SCons's scanner
                  lambda: explain(path, HOST_TARGET)):  # and `explain` never read or hash it
        with pytest.raises(InputError) as info:
            check()
        assert expected in str(info.value)
    assert expected in build_error(path)


def test_external_data_inside_the_model_directory_is_fine(model_dir):
    path = external_model(model_dir / "m.onnx", "w.bin", offset=0, length=64)
    assert external_data_files(path) == [model_dir / "w.bin"]
    assert load_model(path).files == [path, model_dir / "w.bin"]
    (model_dir / "sub").mkdir()
    (model_dir / "w.bin").rename(model_dir / "sub/w.bin")
    path = external_model(model_dir / "m.onnx", "sub/../sub/w.bin")
    assert load_model(path).files[1].resolve() == model_dir / "sub/w.bin"


def test_symlink_inside_the_model_directory_is_one_line(model_dir):
    (model_dir / "link.bin").symlink_to("w.bin")
    path = external_model(model_dir / "m.onnx", "link.bin")
    with pytest.raises(InputError, match="initializer 'w': external data 'link.bin' is a symbolic link"):
        load_model(path)


def test_missing_external_file_is_one_line(model_dir):
    path = external_model(model_dir / "m.onnx", "gone.bin")
    assert "initializer 'w': external data file 'gone.bin' not found" in build_error(path)
    with pytest.raises(InputError, match="external data file 'gone.bin' not found"):
        explain(path, HOST_TARGET)
    assert external_data_files(path) == [model_dir / "gone.bin"]  # SCons's scanner: the file may be generated


@pytest.mark.parametrize("offset, length, message", [
    (1000, None, "external data offset 1000 is beyond the end of 'w.bin' (64 bytes)"),
    (0, 1000, "external data bytes 0 to 1000 are beyond the end of 'w.bin' (64 bytes)"),
    (32, 32, "external data 'w.bin' holds 32 bytes at offset 32, its shape [4, 4] needs 64"),
    ("-5", None, "external data offset '-5' is not a non-negative integer"),
])
def test_external_data_range_beyond_the_file_is_one_line(model_dir, offset, length, message):
    path = external_model(model_dir / "m.onnx", "w.bin", offset=offset, length=length)
    assert f"{path}: initializer 'w': {message}" in build_error(path)


def test_huge_model_file_is_one_line(tmp_path):
    path = tmp_path / "huge.onnx"
    with open(path, "wb") as out:
        out.truncate(3 * 2**30)  # sparse: no disk used
    line = build_error(path)
    assert f"{path}: the model file is 3.0 GiB; protobuf reads ONNX files up to 2 GiB" in line
    assert external_data_files(path) == []


@pytest.mark.parametrize("kind, message", [
    ("random", "not a valid ONNX model"),
    ("empty", "not a valid ONNX model (the file is empty)"),
    ("truncated", "not a valid ONNX model"),
    ("directory", "is a directory, not an ONNX model file"),
    ("fifo", "not a regular file"),
])
def test_file_that_is_not_onnx_is_one_line(tmp_path, kind, message):
    path = tmp_path / "m.onnx"
    if kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(zoo.make_model("mlp").SerializeToString()[:300])
    elif kind == "directory":
        path.mkdir()
    else:
        os.mkfifo(path)
    assert f"{path}: {message}" in build_error(path)


def test_operator_given_a_type_its_schema_refuses_is_one_line(tmp_path):
    path = relu_model(tmp_path / "m.onnx", [4], TensorProto.BOOL, op="Add")  # reached TVM's LLVM codegen
    line = build_error(path)
    assert f"{path}: node 'n' (Add): A typestr: T, has unsupported type: tensor(bool) (ONNX's type check)" in line

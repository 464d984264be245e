"""Models TVM cannot import or partition: one error line naming the file and, where TVM's importer failed on one,
the node; `-v` shows TVM's traceback (a failure can be a bug)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from helpers import HOST_TARGET, one_line_error, run_cli

pytestmark = pytest.mark.tvm


def save(path, nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def tensor(name, dims, elem_type=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem_type, dims)


def build(model, *flags):
    return run_cli(*flags, "build", model, "--target", HOST_TARGET, "-o", model.parent / "pkg")


def test_unique_names_the_node(tmp_path):
    """Unique imports, but into an output whose shape depends on the data (a traceback in the build before)."""
    path = save(tmp_path / "m.onnx", [helper.make_node("Unique", ["x"], ["u"], name="uniq", sorted=1),
                                      helper.make_node("Relu", ["u"], ["y"], name="relu")],
                [tensor("x", [8])], [tensor("y", [None])])
    line = one_line_error(build(path))
    assert f"{path}: node 'uniq' (Unique): the shape of output 'y' depends on the input data" in line
    assert "static shapes" in line
    assert not (tmp_path / "pkg").exists()


def test_import_failure_names_the_node_and_prints_nothing_else(tmp_path):
    weight = numpy_helper.from_array(np.ones((5, 4), np.float32), "w")
    path = save(tmp_path / "m.onnx", [helper.make_node("MatMul", ["x", "w"], ["y"], name="the_matmul")],
                [tensor("x", [2, 3])], [tensor("y", [2, 4])], [weight])
    proc = build(path)
    line = one_line_error(proc)
    assert f"{path}: node 'the_matmul' (MatMul): TVM's ONNX importer failed: Matmul requires the reduction " \
           f"length of the operands to be equal" in line
    assert "metadata[" not in line and "Metadata omitted" not in line
    assert "rerun as `ansor-build -v ...`" in line
    # TVM's own prints (the node's inputs, a BlockBuilder warning) are not shown without -v ...
    assert "Error converting operator" not in proc.stdout + proc.stderr
    assert "BlockBuilder" not in proc.stderr
    # ... and with -v, TVM's traceback is there to find a bug
    verbose = build(path, "-v")
    assert verbose.returncode == 1
    assert "Traceback" in verbose.stderr and "Error converting operator MatMul" in verbose.stderr


def test_huge_intermediate_tensor_is_one_line(tmp_path):
    """An Expand to 2**40 elements built a package before (TVM indexes tensors with 32-bit integers)."""
    target_shape = numpy_helper.from_array(np.array([2**20, 2**20], np.int64), "s")
    path = save(tmp_path / "m.onnx", [helper.make_node("Expand", ["x", "s"], ["y"], name="ex")],
                [tensor("x", [1, 1])], [tensor("y", [2**20, 2**20])], [target_shape])
    line = one_line_error(build(path))
    assert f"{path}: the model computes a tensor of 1099511627776 elements ([1048576, 1048576]); the limit is " \
           f"2147483647 per tensor" in line


def test_partition_failure_is_one_line(tmp_path):
    """PRelu with a legacy-broadcast slope (as old PyTorch exported it) passes the checker and the importer, then
    fails in TVM's legalization with a bare assert (a traceback before)."""
    slope = numpy_helper.from_array(np.full((3,), 0.25, np.float32), "slope")
    path = save(tmp_path / "m.onnx", [helper.make_node("PRelu", ["x", "slope"], ["y"], name="prelu")],
                [tensor("x", [2, 3, 4])], [tensor("y", [2, 3, 4])], [slope])
    line = one_line_error(build(path))
    assert "TVM could not fuse the model's operators (lowering nn_prelu): AssertionError: assert " in line
    assert "rerun as `ansor-build -v ...` for the traceback" in line
    assert "Traceback" in build(path, "-v").stderr


def test_shape_output_is_one_line(tmp_path):
    """TVM imports a Shape result as a shape value, not a tensor (the build's output signature raised before)."""
    path = save(tmp_path / "m.onnx", [helper.make_node("Relu", ["x"], ["y"], name="relu"),
                                      helper.make_node("Shape", ["x"], ["dims"], name="shape")],
                [tensor("x", [2, 3])], [tensor("y", [2, 3]), tensor("dims", [2], TensorProto.INT64)])
    line = one_line_error(build(path))
    assert f"{path}: output 'dims' is imported as a ShapeType (e.g. the result of Shape), not a tensor" in line

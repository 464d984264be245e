"""Damaged ONNX models: in-process loads (many cases) and CLI builds (a few)."""

from __future__ import annotations

import onnx
import onnx.printer
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ansor_build.errors import AnsorError
from ansor_build.model import load_model
from conftest import examples
from guard import assert_clean_exit, call_clean, snapshot
from helpers import HOST_TARGET, run_cli
from mutate import byte_edits

pytestmark = pytest.mark.fuzz

OPS = ["Unique", "NonMaxSuppression", "Loop", "If", "Foo", "", "Relu", "MatMul", "Add", "Reshape", "Conv", "Gemm"]
DIMS = [0, -1, 1, 3, 2 ** 31, 2 ** 40, -(2 ** 40)]


@st.composite
def graph_edits(draw, proto_bytes: bytes) -> bytes:
    """A model with a few structural edits: op types, input dims and types, dropped initializers, dangling names."""
    model = onnx.ModelProto()
    model.ParseFromString(proto_bytes)
    graph = model.graph
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["op_type", "dim", "elem_type", "drop_initializer", "dangle", "attribute",
                                   "opset", "drop_output"]))
        if op == "op_type" and graph.node:
            graph.node[draw(st.integers(0, len(graph.node) - 1))].op_type = draw(st.sampled_from(OPS))
        elif op == "dim" and graph.input:
            dims = graph.input[0].type.tensor_type.shape.dim
            if dims:
                dim = dims[draw(st.integers(0, len(dims) - 1))]
                if draw(st.booleans()):
                    dim.dim_value = draw(st.sampled_from(DIMS))
                else:
                    dim.dim_param = draw(st.sampled_from(["N", "", "batch size"]))
        elif op == "elem_type" and graph.input:
            graph.input[0].type.tensor_type.elem_type = draw(st.integers(0, 30))
        elif op == "drop_initializer" and graph.initializer:
            del graph.initializer[draw(st.integers(0, len(graph.initializer) - 1))]
        elif op == "dangle" and graph.node:
            node = graph.node[draw(st.integers(0, len(graph.node) - 1))]
            if node.input:
                node.input[draw(st.integers(0, len(node.input) - 1))] = "no_such_tensor"
        elif op == "attribute" and graph.node:
            node = graph.node[draw(st.integers(0, len(graph.node) - 1))]
            node.attribute.append(onnx.helper.make_attribute(draw(st.sampled_from(["axis", "perm", "alpha"])),
                                                             draw(st.sampled_from([-7, 99, 2.5, [9, 9, 9]]))))
        elif op == "opset" and model.opset_import:
            model.opset_import[0].version = draw(st.sampled_from([0, 1, 7, 99, 10 ** 6]))
        elif op == "drop_output" and graph.output:
            del graph.output[0]
    return model.SerializeToString()


def _load(path):
    result = call_clean(load_model, path)
    if not isinstance(result, AnsorError):
        result.sha256()


@settings(max_examples=examples(150))
@given(data=st.data())
def test_damaged_model_bytes_load_or_fail_in_one_line(tmp_path_factory, mlp_model, data):
    path = tmp_path_factory.mktemp("m") / "model.onnx"
    path.write_bytes(data.draw(byte_edits(mlp_model.read_bytes(), max_edits=3)))
    _load(path)


@settings(max_examples=examples(150))
@given(data=st.data())
def test_damaged_model_graphs_load_or_fail_in_one_line(tmp_path_factory, mlp_model, data):
    path = tmp_path_factory.mktemp("m") / "model.onnx"
    path.write_bytes(data.draw(graph_edits(mlp_model.read_bytes())))
    _load(path)


@settings(max_examples=examples(8))
@given(data=st.data())
def test_build_of_damaged_model_ends_cleanly(tmp_path_factory, mlp_model, data):
    work = tmp_path_factory.mktemp("work")
    (work / "keep").mkdir()
    (work / "keep" / "notes.txt").write_text("not ansor-build's")
    model = data.draw(graph_edits(mlp_model.read_bytes()))
    (work / "model.onnx").write_bytes(model)
    # Load errors are covered in-process above; here only models that load go on to TVM's import and compile.
    assume(not isinstance(call_clean(load_model, work / "model.onnx"), AnsorError))
    before = snapshot(work)
    proc = run_cli("build", "model.onnx", "--target", HOST_TARGET, "-o", "out", cwd=work)
    parsed = onnx.ModelProto()
    parsed.ParseFromString(model)
    assert_clean_exit(proc, onnx.printer.to_text(parsed.graph)[:3000])
    assert snapshot(work) == before

"""The package loader's call path (numpy in, numpy out): inputs read where they are, fresh outputs handed over
without a copy, and never an array that aliases the model's constants, the caller's inputs or another output."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ansor_build.build import build_package
from ansor_build.check import onnxruntime_session
from helpers import HOST_TARGET

pytestmark = pytest.mark.tvm

SHAPE = [2, 3, 5, 7]  # odd dims: no row of the input is a multiple of the vector width
CONSTANT = np.arange(6, dtype=np.float32).reshape(2, 3) / 7


def _aliasing_model(path):
    """Outputs: a fresh tensor (Relu of x*w), the input itself (Identity), a view of the input (Reshape), a
    constant of the model, and the fresh tensor again (Identity of it)."""
    w = numpy_helper.from_array(np.linspace(-1, 1, 7, dtype=np.float32), "w")
    const = numpy_helper.from_array(CONSTANT, "const")
    shape = numpy_helper.from_array(np.array([6, 35], dtype=np.int64), "shape")
    nodes = [helper.make_node("Mul", ["x", "w"], ["xw"]), helper.make_node("Relu", ["xw"], ["fresh"]),
             helper.make_node("Identity", ["x"], ["same"]), helper.make_node("Reshape", ["x", "shape"], ["view"]),
             helper.make_node("Identity", ["const"], ["constant"]), helper.make_node("Identity", ["fresh"], ["twice"])]
    outputs = [helper.make_tensor_value_info("fresh", TensorProto.FLOAT, SHAPE),
               helper.make_tensor_value_info("same", TensorProto.FLOAT, SHAPE),
               helper.make_tensor_value_info("view", TensorProto.FLOAT, [6, 35]),
               helper.make_tensor_value_info("constant", TensorProto.FLOAT, [2, 3]),
               helper.make_tensor_value_info("twice", TensorProto.FLOAT, SHAPE)]
    graph = helper.make_graph(nodes, "aliasing", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              outputs, [w, const, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


@pytest.fixture(scope="module")
def aliasing(tmp_path_factory):
    root = tmp_path_factory.mktemp("aliasing")
    _aliasing_model(root / "aliasing.onnx")
    package = build_package(root / "aliasing.onnx", HOST_TARGET, root / "pkg").package
    spec = importlib.util.spec_from_file_location("aliasing_loader", package / "loader.py")
    loader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loader)
    return loader, loader.load(package), onnxruntime_session(root / "aliasing.onnx", 2)


def _expected(session, x):
    return session.run(None, {"x": x})


def _check(outputs, expected):
    assert len(outputs) == len(expected)
    for got, want in zip(outputs, expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_outputs_never_alias_constants_inputs_or_each_other(aliasing):
    loader, model, session = aliasing
    rng = np.random.default_rng(0)
    held = []
    for _ in range(5):  # the first two calls learn which outputs are fresh; the rest hand those over
        x = loader.aligned_empty(SHAPE, np.float32)
        x[...] = rng.standard_normal(SHAPE)
        expected = _expected(session, x.copy())
        outputs = model(x)
        _check(outputs, expected)
        for out in outputs:  # a caller scribbling on its outputs changes neither the model nor its input
            out[...] = 1e6
        np.testing.assert_array_equal(x, expected[1])
        held.append(outputs)
    _check(model(x), _expected(session, x))  # the constant is intact
    # learnt: only the fresh tensor's first place is handed over; the input, its view, the constant and the fresh
    # tensor's second place are copied
    assert model._outputs.modes == [loader.HAND_OVER] + [loader.COPY] * 4
    fresh = held[-1][0]
    assert not fresh.flags.owndata and fresh.base is not None  # handed over: numpy owns the VM's buffer
    assert all(out.flags.owndata for out in held[-1][1:])  # copies


@pytest.mark.parametrize("layout", ["aligned", "misaligned", "strided", "read-only", "list", "fortran"])
def test_inputs_of_any_layout_give_the_same_outputs_and_stay_unchanged(aliasing, layout):
    loader, model, session = aliasing
    base = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)
    if layout == "aligned":
        x = loader.aligned_empty(SHAPE, np.float32)
        x[...] = base
    elif layout == "misaligned":
        raw = loader.aligned_empty([base.size + 1], np.float32)
        x = raw[1:].reshape(SHAPE)
        x[...] = base
        assert x.__array_interface__["data"][0] % loader.ALIGNMENT == 4
    elif layout == "strided":
        x = np.zeros(SHAPE[:-1] + [2 * SHAPE[-1]], np.float32)[..., ::2]
        x[...] = base
        assert not x.flags.c_contiguous
    elif layout == "read-only":
        x = base.copy()
        x.flags.writeable = False
    elif layout == "fortran":
        x = np.asfortranarray(base)
    else:
        x = base.tolist()
    for _ in range(3):
        _check(model(x), _expected(session, base))
    np.testing.assert_array_equal(np.asarray(x), base)


def test_out_arrays_are_filled_and_returned(aliasing):
    loader, model, session = aliasing
    x = np.random.default_rng(2).standard_normal(SHAPE).astype(np.float32)
    out = [np.empty(sig["shape"], sig["dtype"]) for sig in model.outputs]
    result = model(x, out=out)
    assert all(a is b for a, b in zip(result, out))
    _check(out, _expected(session, x))
    with pytest.raises(ValueError, match=r"out\[3\] \(output 'constant'\): expected a writeable numpy array of "
                                         r"float32\[2, 3\]"):
        model(x, out=[*out[:3], np.empty((3, 2), np.float32), out[4]])
    with pytest.raises(ValueError, match=r"input 'x': expected float32\[2, 3, 5, 7\], got float64\[2, 3, 5, 7\]"):
        model(x.astype(np.float64))


def test_prepared_inputs_keep_their_own_memory(aliasing):
    """Prepared tensors outlive the call: two prepared misaligned inputs never share the loader's staging buffer."""
    loader, model, session = aliasing
    def misaligned(seed):
        x = loader.aligned_empty([int(np.prod(SHAPE)) + 1], np.float32)[1:].reshape(SHAPE)
        x[...] = np.random.default_rng(seed).standard_normal(SHAPE)
        return x

    prepared = [(model.prepare(x), x.copy()) for x in (misaligned(3), misaligned(4))]
    model(misaligned(5))  # a call in between, through the staging buffer
    for tensors, x in prepared:
        _check([t.numpy() for t in model.run_prepared(tensors)], _expected(session, x))

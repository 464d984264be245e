"""The deterministic model zoo: valid ONNX, runs in onnxruntime, reproducible bytes, controlled variants.

No TVM here (it is slow to import); the TVM round trip is checked by the compile tests.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from ansor_build import zoo
from ansor_build.errors import InputError
from ansor_build.version import __version__

ROOT = pathlib.Path(__file__).resolve().parents[2]
NAMES = ("mlp", "convnet", "resnet", "mobilenet", "transformer")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"]
    assert [o.name for o in sess.get_outputs()] == ["output"]
    return sess.run(["output"], feeds)[0]


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _inits(model) -> dict[str, bytes]:
    return {t.name: t.SerializeToString() for t in model.graph.initializer}


def _nodes(model) -> dict[str, bytes]:
    return {n.name: n.SerializeToString() for n in model.graph.node}


def test_registry():
    assert zoo.NAMES == NAMES
    assert tuple(zoo.MODELS) == NAMES
    for name, spec in zoo.MODELS.items():
        assert isinstance(spec, zoo.ModelSpec) and spec.name == name and spec.description and callable(spec.build)
        assert spec.variant_layer
        with pytest.raises(dataclasses.FrozenInstanceError):
            spec.name = "x"  # type: ignore[misc]


@pytest.mark.parametrize("name", NAMES)
def test_model_is_valid_and_runs(name):
    model = zoo.make_model(name)
    onnx.checker.check_model(model, full_check=True)
    assert model.producer_name == "ansor-build-zoo" and model.producer_version == __version__
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    assert model.ir_version in (8, 9) and not model.doc_string and not model.graph.doc_string
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, out.name) == ("input", "output")
    assert inp.type.tensor_type.elem_type == out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert all(isinstance(d, int) and d > 0 for d in _dims(inp) + _dims(out))  # static by default
    # every weight tensor is float32 (integer shape constants are fine) and not degenerate
    for t in model.graph.initializer:
        arr = onnx.numpy_helper.to_array(t)
        if arr.dtype.kind == "f":
            assert arr.dtype == np.float32 and np.isfinite(arr).all()

    feeds = zoo.sample_inputs(model)
    y = _run(model, feeds)
    assert list(y.shape) == _dims(out)
    assert np.isfinite(y).all()
    assert np.ptp(y) > 1e-2, "output is (nearly) constant"
    assert 1e-2 < np.abs(y).max() < 50, "output magnitude should be O(1)"
    assert not np.allclose(y, _run(model, zoo.sample_inputs(model, seed=1))), "output ignores its input"


@pytest.mark.parametrize("name", NAMES)
def test_bytes_are_reproducible(name):
    a = zoo.make_model(name).SerializeToString()
    assert a == zoo.make_model(name).SerializeToString() == zoo.model_bytes(name)
    assert zoo.model_bytes(name, variant=1) == zoo.model_bytes(name, variant=1) != a


def test_cli_writes_the_same_bytes_in_another_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ansor_build.zoo", str(tmp_path)], env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == len(NAMES)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.onnx" for n in NAMES)  # no temp files left
    for name in NAMES:
        assert (tmp_path / f"{name}.onnx").read_bytes() == zoo.model_bytes(name)

    proc = subprocess.run([sys.executable, "-m", "ansor_build.zoo", str(tmp_path / "v"), "convnet", "--variant", "1"],
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(tmp_path / "v" / "convnet.onnx")
    assert (tmp_path / "v" / "convnet.onnx").read_bytes() == zoo.model_bytes("convnet", variant=1)


def test_zoo_does_not_import_tvm():
    code = "import sys, ansor_build.zoo as z; z.make_model('resnet'); assert 'tvm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], env=_env(), check=True, timeout=120)


@pytest.mark.parametrize("name", NAMES)
def test_variant_changes_exactly_one_layer(name):
    layer = zoo.MODELS[name].variant_layer
    base, var = zoo.make_model(name), zoo.make_model(name, variant=1)
    onnx.checker.check_model(var, full_check=True)

    def owned(tensor_name):
        return tensor_name == layer or tensor_name.startswith(layer + ".")

    a, b = _inits(base), _inits(var)
    assert set(a) == set(b)
    changed = {n for n in a if a[n] != b[n]}
    assert changed and all(owned(n) for n in changed), changed
    weight = layer + ".weight"
    assert weight in changed
    wa, wb = (onnx.numpy_helper.to_array(next(t for t in m.graph.initializer if t.name == weight)) for m in (base, var))
    assert wa.shape != wb.shape, "the variant must change the layer's shape"
    # re-seeded, not merely resized: the overlapping part of the weights differs
    overlap = tuple(slice(0, min(p, q)) for p, q in zip(wa.shape, wb.shape))
    assert not np.allclose(wa[overlap], wb[overlap])

    na, nb = _nodes(base), _nodes(var)
    assert list(na) == list(nb), "same graph topology"
    assert all(owned(n) for n in na if na[n] != nb[n])

    # variants are distinct from each other and still run
    assert zoo.model_bytes(name, variant=2) != zoo.model_bytes(name, variant=1)
    y = _run(var, zoo.sample_inputs(var))
    assert np.isfinite(y).all() and np.ptp(y) > 1e-2


@pytest.mark.parametrize("name", NAMES)
def test_dynamic_batch(name):
    model = zoo.make_model(name, dynamic_batch=True)
    onnx.checker.check_model(model, full_check=True)
    assert _dims(model.graph.input[0])[0] == "batch" and _dims(model.graph.output[0])[0] == "batch"
    assert _inits(model) == _inits(zoo.make_model(name)), "same weights as the static model"

    feeds = zoo.sample_inputs(model, seed=5, shapes={"batch": 3})
    assert feeds["input"].shape[0] == 3
    y = _run(model, feeds)
    assert y.shape[0] == 3 and np.isfinite(y).all()
    # each batch row equals the static model on that row
    static = zoo.make_model(name)
    for i in range(3):
        row = _run(static, {"input": feeds["input"][i:i + 1]})
        np.testing.assert_allclose(y[i:i + 1], row, rtol=1e-4, atol=1e-5)


def test_sample_inputs():
    model = zoo.make_model("convnet", dynamic_batch=True)
    a = zoo.sample_inputs(model, seed=7)
    assert list(a) == ["input"] and a["input"].dtype == np.float32 and a["input"].shape == (1, 3, 56, 56)
    np.testing.assert_array_equal(a["input"], zoo.sample_inputs(model, seed=7)["input"])
    assert not np.array_equal(a["input"], zoo.sample_inputs(model, seed=8)["input"])
    assert zoo.sample_inputs(model, shapes={"input": (2, 3, 56, 56)})["input"].shape == (2, 3, 56, 56)
    assert zoo.sample_inputs(zoo.make_model("mlp"), shapes={"batch": 4})["input"].shape == (1, 64)  # static: ignored
    with pytest.raises(InputError):
        zoo.sample_inputs(model, shapes={"input": (2, 3, 28, 28)})


def test_write_model(tmp_path):
    path = zoo.write_model("mobilenet", tmp_path / "sub" / "m.onnx", variant=1)
    assert isinstance(path, pathlib.Path) and path == tmp_path / "sub" / "m.onnx"
    assert path.read_bytes() == zoo.model_bytes("mobilenet", variant=1)
    path = zoo.write_model("mobilenet", path)  # overwrite in place
    assert path.read_bytes() == zoo.model_bytes("mobilenet")
    assert [p.name for p in path.parent.iterdir()] == ["m.onnx"]
    assert onnx.load(str(path)).graph.name == "mobilenet"


@pytest.mark.parametrize("call", [
    lambda: zoo.make_model("resnt"),
    lambda: zoo.get_spec("resnt"),
    lambda: zoo.write_model("resnt", "/nonexistent/never-written.onnx"),
])
def test_unknown_name(call):
    with pytest.raises(InputError) as exc:
        call()
    msg = str(exc.value)
    assert "\n" not in msg and "'resnt'" in msg and "did you mean 'resnet'" in msg
    assert all(n in msg for n in NAMES)


def test_bad_variant():
    for bad in (-1, 1.5, True):
        with pytest.raises(InputError):
            zoo.make_model("mlp", variant=bad)


def test_cli_unknown_name(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ansor_build.zoo", str(tmp_path), "mlp", "mobilnet"], env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "did you mean 'mobilenet'" in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == [], "nothing is written when a name is wrong"

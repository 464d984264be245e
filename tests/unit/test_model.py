"""ONNX model loading: signatures, shape overrides, external data, errors (onnx only, no TVM)."""

from __future__ import annotations

import onnx
import pytest

from ansor_build import zoo
from ansor_build.errors import InputError
from ansor_build.model import external_data_files, load_model, parse_shapes


def save_with_external_data(tmp_path, name="convnet"):
    model = zoo.make_model(name)
    path = tmp_path / f"{name}.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=f"{name}.weights", size_threshold=0)
    return path, tmp_path / f"{name}.weights"


def test_static_model_signature(zoo_dir):
    model = load_model(zoo_dir / "convnet.onnx")
    assert [(s.name, s.shape, s.dtype) for s in model.inputs] == [("input", (1, 3, 56, 56), "float32")]
    assert model.files == [zoo_dir / "convnet.onnx"]
    assert external_data_files(zoo_dir / "convnet.onnx") == []


def test_external_data_is_loaded_and_tracked(tmp_path):
    path, weights = save_with_external_data(tmp_path)
    assert weights.stat().st_size > 1000
    assert external_data_files(path) == [weights]
    model = load_model(path)
    assert model.files == [path, weights]
    inline = zoo.make_model("convnet")
    assert {i.name: i.raw_data for i in model.proto.graph.initializer}["conv1.weight"] == \
        {i.name: i.raw_data for i in inline.graph.initializer}["conv1.weight"]
    before = model.sha256()
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    assert load_model(path).sha256() != before  # the weights are part of the model's identity


def test_missing_external_data_file(tmp_path):
    path, weights = save_with_external_data(tmp_path)
    weights.unlink()
    with pytest.raises(InputError, match=r"external data file 'convnet.weights' not found"):
        load_model(path)


def test_symbolic_dim_needs_override(tmp_path):
    path = zoo.write_model("mlp", tmp_path / "dyn.onnx", dynamic_batch=True)
    with pytest.raises(InputError, match=r"input 'input' dim 0 is symbolic \('batch'\).*--shape input=1,64"):
        load_model(path)
    model = load_model(path, {"input": [4, 64]})
    assert model.inputs[0].shape == (4, 64)


@pytest.mark.parametrize("shapes, message", [
    ({"input": [4]}, "shape override [4] has 1 dims, the model's input has 2"),
    ({"input": [4, 65]}, "input 'input' dim 1: the model fixes it to 64, the override gives 65"),
    ({"inptu": [4, 64]}, "shape given for unknown input 'inptu' (model inputs: input)"),
])
def test_bad_shape_overrides(tmp_path, shapes, message):
    path = zoo.write_model("mlp", tmp_path / "dyn.onnx", dynamic_batch=True)
    with pytest.raises(InputError) as info:
        load_model(path, shapes)
    assert message in str(info.value)


def test_wrong_suffix_and_garbage(tmp_path):
    text = tmp_path / "model.pb"
    text.write_bytes(b"x")
    with pytest.raises(InputError, match="unsupported model format '.pb' \\(supported: .onnx\\)"):
        load_model(text)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff" * 64)
    with pytest.raises(InputError, match="not a valid ONNX model"):
        load_model(garbage)


def test_parse_shapes():
    assert parse_shapes("input=1,3,224,224; mask=1,16") == {"input": [1, 3, 224, 224], "mask": [1, 16]}
    for bad in ("input", "input=1,x", "=1,2"):
        with pytest.raises(InputError, match="expected NAME=D0,D1"):
            parse_shapes(bad)

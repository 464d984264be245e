"""A model whose NHWC rewrite fails (TVM 0.27's ConvertLayout) still builds, NCHW, and matches onnxruntime."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from helpers import HOST_TARGET, run_cli

pytestmark = pytest.mark.tvm

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def max_model(path: Path) -> Path:
    """Max of two tensors: ConvertLayout fails on it ("Invalid SLayout") though it has no convolution."""
    infos = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 8, 8]) for n in ("x", "y", "z")]
    graph = helper.make_graph([helper.make_node("Max", ["x", "y"], ["z"], name="max")], "g", infos[:2], infos[2:])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("name", ["max", "light_squeezenet"])
def test_failed_nhwc_rewrite_falls_back_to_nchw(tmp_path, name):
    model = max_model(tmp_path / "max.onnx") if name == "max" else LIGHT / f"{name}.onnx"
    build = run_cli("build", model, "--target", HOST_TARGET, "-o", tmp_path / "pkg", check=True)
    assert "conv layout NHWC failed for this model" in build.stderr and "run NCHW instead" in build.stderr
    check = run_cli("check", tmp_path / "pkg", "--model", model)
    assert check.returncode == 0 and "OK vs onnxruntime" in check.stdout, check.stdout + check.stderr

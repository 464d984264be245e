"""A generated model with many distinct tuning tasks: a chain of Gemm+Relu layers, each of its own width, so every
layer is a task of its own (real models have 25-200 tasks; the zoo has 3-12)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def widths(layers: int) -> list[int]:
    return [8 + 4 * i for i in range(layers + 1)]


def build(layers: int = 42) -> onnx.ModelProto:
    rng = np.random.default_rng(18)
    sizes = widths(layers)
    nodes, inits, name = [], [], "input"
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        w = numpy_helper.from_array((rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32), f"w{i}")
        b = numpy_helper.from_array(rng.standard_normal(n_out).astype(np.float32) * 0.1, f"b{i}")
        inits += [w, b]
        out = "output" if i == layers - 1 else f"h{i}"
        nodes.append(helper.make_node("Gemm", [name, f"w{i}", f"b{i}"], [f"g{i}"], name=f"gemm{i}"))
        nodes.append(helper.make_node("Relu", [f"g{i}"], [out], name=f"relu{i}"))
        name = out
    graph = helper.make_graph(nodes, "many_tasks",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, sizes[0]])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, sizes[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write(path: Path, layers: int = 42) -> Path:
    path = Path(path)
    path.write_bytes(build(layers).SerializeToString())
    return path

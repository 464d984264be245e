"""MLP: input [1, 64] -> Gemm 128 -> Relu -> Gemm 128 -> Relu -> Gemm 10 = output [1, 10].

Variant ``v`` changes only layer ``fc3`` (the classifier): its weight/bias seed and its width, 10 + 2*v outputs
(so the output becomes [1, 10 + 2*v]); ``fc1`` and ``fc2`` stay bit-identical.
"""

from __future__ import annotations

import onnx

from .graph import OUTPUT, GraphBuilder

SEED = 1001
VARIANT_LAYER = "fc3"


def build(*, variant: int = 0, dynamic_batch: bool = False) -> onnx.ModelProto:
    g = GraphBuilder("mlp", SEED, variants={VARIANT_LAYER: variant})
    classes = 10 + 2 * variant
    x = g.relu(g.gemm("input", "fc1", 64, 128), "fc1.relu")
    x = g.relu(g.gemm(x, "fc2", 128, 128), "fc2.relu")
    g.gemm(x, "fc3", 128, classes, output=OUTPUT)
    return g.finish([1, 64], [1, classes], dynamic_batch=dynamic_batch)

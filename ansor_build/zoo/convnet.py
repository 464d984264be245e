"""Small convnet: input [1, 3, 56, 56] -> 3x (Conv 3x3 + Relu), MaxPool after the first two -> GAP -> Flatten -> Gemm
= output [1, 10]. Channels 3 -> 16 -> 32 -> 32; spatial 56 -> 28 -> 14.

Variant ``v`` changes only layer ``conv3``: its weight/bias seed and its kernel size, 3 + 2*v (padding k//2, so every
other shape stays the same); all other initializers and nodes stay bit-identical.
"""

from __future__ import annotations

import onnx

from .graph import GraphBuilder

SEED = 1002
VARIANT_LAYER = "conv3"


def _pool(g: GraphBuilder, x: str, name: str) -> str:
    return g.node("MaxPool", [x], name, kernel_shape=[2, 2], strides=[2, 2])


def build(*, variant: int = 0, dynamic_batch: bool = False) -> onnx.ModelProto:
    g = GraphBuilder("convnet", SEED, variants={VARIANT_LAYER: variant})
    x = _pool(g, g.relu(g.conv("input", "conv1", 3, 16, 3), "conv1.relu"), "pool1")
    x = _pool(g, g.relu(g.conv(x, "conv2", 16, 32, 3), "conv2.relu"), "pool2")
    x = g.relu(g.conv(x, "conv3", 32, 32, 3 + 2 * variant), "conv3.relu")
    g.classifier(x, 32, 10)
    return g.finish([1, 3, 56, 56], [1, 10], dynamic_batch=dynamic_batch)

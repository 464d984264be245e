"""MobileNet-style: input [1, 3, 32, 32] -> stem Conv 3x3 s2 (16) + BN + ReLU6 -> two depthwise-separable blocks
(depthwise Conv with group=C + BN + ReLU6, pointwise 1x1 Conv + BN + ReLU6; 16 -> 24, then 24 -> 32 with stride 2)
-> one inverted residual block (1x1 expand 32 -> 64 + BN + ReLU6, depthwise 3x3 + BN + ReLU6, 1x1 project 64 -> 32
+ BN, Add with its input) -> GlobalAveragePool -> Flatten -> Gemm = output [1, 10].

ReLU6 is ``Clip(x, 0, 6)`` with min/max as constant inputs (opset >= 11 form).
Variant ``v`` changes only layer ``ir.dw`` (the inverted residual's depthwise conv): its weight seed and its kernel
size, 3 + 2*v (same padding); every other layer stays bit-identical.
"""

from __future__ import annotations

import onnx

from .graph import GraphBuilder

SEED = 1004
VARIANT_LAYER = "ir.dw"


def _conv_bn(g: GraphBuilder, x: str, name: str, cin: int, cout: int, k: int, *, stride: int = 1,
             group: int = 1, relu6: bool = True) -> str:
    y = g.batchnorm(g.conv(x, name, cin, cout, k, stride=stride, group=group, bias=False), name + ".bn", cout)
    return g.node("Clip", [y, "relu6.min", "relu6.max"], name + ".relu6") if relu6 else y


def _separable(g: GraphBuilder, x: str, name: str, cin: int, cout: int, stride: int) -> str:
    x = _conv_bn(g, x, name + ".dw", cin, cin, 3, stride=stride, group=cin)
    return _conv_bn(g, x, name + ".pw", cin, cout, 1)


def build(*, variant: int = 0, dynamic_batch: bool = False) -> onnx.ModelProto:
    g = GraphBuilder("mobilenet", SEED, variants={VARIANT_LAYER: variant})
    g.const("relu6.min", 0.0)
    g.const("relu6.max", 6.0)
    x = _conv_bn(g, "input", "stem", 3, 16, 3, stride=2)  # 16 x 16 x 16
    x = _separable(g, x, "ds1", 16, 24, 1)  # 24 x 16 x 16
    x = _separable(g, x, "ds2", 24, 32, 2)  # 32 x 8 x 8
    y = _conv_bn(g, x, "ir.expand", 32, 64, 1)
    y = _conv_bn(g, y, "ir.dw", 64, 64, 3 + 2 * variant, group=64)
    y = _conv_bn(g, y, "ir.project", 64, 32, 1, relu6=False)
    x = g.node("Add", [x, y], "ir.add")
    g.classifier(x, 32, 10)
    return g.finish([1, 3, 32, 32], [1, 10], dynamic_batch=dynamic_batch)

"""ResNet-style: input [1, 3, 32, 32] -> stem Conv 3x3 (16) + BatchNormalization + Relu -> basic block 16 -> 16
(identity shortcut) -> basic block 16 -> 32, stride 2, 1x1 Conv + BatchNormalization projection shortcut ->
GlobalAveragePool -> Flatten -> Gemm = output [1, 10].

A basic block is Conv-BN-Relu-Conv-BN, Add shortcut, Relu; convs carry no bias (BN supplies it).
Variant ``v`` changes only layer ``block2.conv2``: its weight seed and its kernel size, 3 + 2*v (same padding, so no
other shape changes); its BatchNormalization and all other layers stay bit-identical.
"""

from __future__ import annotations

import onnx

from .graph import GraphBuilder

SEED = 1003
VARIANT_LAYER = "block2.conv2"


def _conv_bn(g: GraphBuilder, x: str, name: str, cin: int, cout: int, k: int, stride: int = 1) -> str:
    return g.batchnorm(g.conv(x, name, cin, cout, k, stride=stride, bias=False), name + ".bn", cout)


def _block(g: GraphBuilder, x: str, name: str, cin: int, cout: int, stride: int, k2: int = 3) -> str:
    y = g.relu(_conv_bn(g, x, name + ".conv1", cin, cout, 3, stride), name + ".relu1")
    y = _conv_bn(g, y, name + ".conv2", cout, cout, k2)
    if stride != 1 or cin != cout:
        x = _conv_bn(g, x, name + ".proj", cin, cout, 1, stride)
    return g.relu(g.node("Add", [y, x], name + ".add"), name + ".relu2")


def build(*, variant: int = 0, dynamic_batch: bool = False) -> onnx.ModelProto:
    g = GraphBuilder("resnet", SEED, variants={VARIANT_LAYER: variant})
    x = g.relu(_conv_bn(g, "input", "stem", 3, 16, 3), "stem.relu")
    x = _block(g, x, "block1", 16, 16, 1)
    x = _block(g, x, "block2", 16, 32, 2, k2=3 + 2 * variant)
    g.classifier(x, 32, 10)
    return g.finish([1, 3, 32, 32], [1, 10], dynamic_batch=dynamic_batch)

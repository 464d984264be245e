"""A tiny, deterministic ONNX graph builder used by the zoo models.

Every weight comes from its own RNG, seeded by ``(model seed, crc32(layer), crc32(tensor role), layer variant)``, so changing one
layer's shape or seed never shifts the random stream of any other layer. Names are explicit and stable; nothing in
the output depends on time, the process or dict/set ordering, so the serialized bytes are reproducible.
"""

from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ansor_build.version import __version__

OPSET = 17
IR_VERSION = 8
PRODUCER = "ansor-build-zoo"
INPUT = "input"
OUTPUT = "output"


class GraphBuilder:
    """Collects nodes and initializers; ``finish`` turns them into a ``ModelProto``."""

    def __init__(self, name: str, seed: int, *, variants: dict[str, int] | None = None):
        self.name = name
        self.seed = seed
        self.variants = dict(variants or {})  # layer name -> variant number (changes that layer's RNG seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: set[str] = {INPUT}

    # -- names and randomness --------------------------------------------------------------------------------
    def _unique(self, name: str) -> str:
        if name in self._names:
            raise ValueError(f"duplicate tensor name {name!r} in zoo model {self.name!r}")
        self._names.add(name)
        return name

    def rng(self, layer: str, part: str) -> np.random.Generator:
        """The RNG of one tensor of a layer: independent of every other layer and of the build order."""
        key = [self.seed, zlib.crc32(layer.encode()), zlib.crc32(part.encode()), self.variants.get(layer, 0)]
        return np.random.default_rng(key)

    # -- initializers ------------------------------------------------------------------------------------------
    def const(self, name: str, value) -> str:
        """Add a constant initializer (float values become float32, integer values int64)."""
        arr = np.asarray(value)
        arr = arr.astype(np.float32 if arr.dtype.kind == "f" else np.int64)
        self.initializers.append(numpy_helper.from_array(arr, self._unique(name)))
        return name

    def weight(self, layer: str, shape: Sequence[int], fan_in: int, *, gain: float = 2.0) -> str:
        """He-initialised weight ``<layer>.weight``: normal with std sqrt(gain / fan_in)."""
        w = self.rng(layer, "weight").standard_normal(shape) * np.sqrt(gain / fan_in)
        return self.const(layer + ".weight", w)

    def bias(self, layer: str, n: int, *, scale: float = 0.1) -> str:
        return self.const(layer + ".bias", self.rng(layer, "bias").standard_normal(n) * scale)

    # -- nodes -------------------------------------------------------------------------------------------------
    def node(self, op: str, inputs: Sequence[str], name: str, *, outputs: int | Sequence[str] = 1, **attrs):
        """Add node ``name``; outputs are auto-named ``<name>`` (or ``<name>.<i>``) unless given.

        Returns the output name, or a tuple of names when the node has several outputs.
        """
        if isinstance(outputs, int):
            outs = [name] if outputs == 1 else [f"{name}.{i}" for i in range(outputs)]
        else:
            outs = list(outputs)
        outs = [self._unique(o) for o in outs]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=name, **attrs))
        return outs[0] if len(outs) == 1 else tuple(outs)

    # -- common layers -----------------------------------------------------------------------------------------
    def conv(self, x: str, name: str, cin: int, cout: int, k: int, *, stride: int = 1, group: int = 1,
             bias: bool = True) -> str:
        w = self.weight(name, (cout, cin // group, k, k), fan_in=(cin // group) * k * k)
        ins = [x, w] + ([self.bias(name, cout)] if bias else [])
        return self.node("Conv", ins, name, kernel_shape=[k, k], strides=[stride, stride],
                         pads=[k // 2] * 4, group=group)

    def batchnorm(self, x: str, name: str, c: int) -> str:
        """Inference BatchNormalization with non-trivial scale, bias, running mean and variance."""
        r = self.rng(name, "bn")
        scale = self.const(name + ".scale", r.uniform(0.5, 1.5, c))
        b = self.const(name + ".bias", r.normal(0.0, 0.1, c))
        mean = self.const(name + ".mean", r.normal(0.0, 0.2, c))
        var = self.const(name + ".var", r.uniform(0.5, 2.0, c))
        return self.node("BatchNormalization", [x, scale, b, mean, var], name, epsilon=1e-5)

    def gemm(self, x: str, name: str, fin: int, fout: int, *, output: str | None = None) -> str:
        """Fully connected layer ``x @ W.T + b`` (weight stored [out, in], like PyTorch exports)."""
        w = self.weight(name, (fout, fin), fan_in=fin, gain=1.0)
        return self.node("Gemm", [x, w, self.bias(name, fout)], name, outputs=[output or name], transB=1)

    def relu(self, x: str, name: str) -> str:
        return self.node("Relu", [x], name)

    def classifier(self, x: str, c: int, classes: int) -> str:
        """GlobalAveragePool -> Flatten -> Gemm writing the graph output."""
        x = self.node("GlobalAveragePool", [x], "gap")
        x = self.node("Flatten", [x], "flatten", axis=1)
        return self.gemm(x, "fc", c, classes, output=OUTPUT)

    # -- the model ---------------------------------------------------------------------------------------------
    def finish(self, in_shape: Sequence[int], out_shape: Sequence[int], *,
               dynamic_batch: bool = False) -> onnx.ModelProto:
        """Wrap nodes and initializers into a model with input ``input`` and output ``output`` (float32).

        The last node must write ``output`` (pass ``outputs=[OUTPUT]``). With ``dynamic_batch`` dim 0 of both is
        the symbolic dim ``batch``.
        """
        def dims(shape):
            return ["batch", *shape[1:]] if dynamic_batch else list(shape)

        graph = helper.make_graph(
            self.nodes, self.name,
            [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, dims(in_shape))],
            [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, dims(out_shape))],
            initializer=self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name=PRODUCER, producer_version=__version__)
        model.ir_version = IR_VERSION
        return model

"""One pre-norm transformer encoder block: input [1, 16, 64] (tokens x model dim) = output [1, 16, 64].

    h = x + OutProj(Attention(LayerNorm1(x)))      4 heads; fused QKV MatMul + Add, Split into q, k, v;
    y = h + FC2(GELU(FC1(LayerNorm2(h))))          MLP 64 -> 128 -> 64

Attention: Reshape [0, 0, 4, -1] + Transpose to heads, q @ k^T, Div by sqrt(16), Softmax, @ v, Transpose + Reshape
back. GELU is written out as ``x * 0.5 * (1 + Erf(x / sqrt(2)))`` (Div, Erf, Add, Mul, Mul) as PyTorch exports it.
LayerNormalization is the opset-17 op. Linear layers are MatMul with weight [in, out] + Add bias.

Variant ``v`` changes only layer ``attn.qkv``: its weight/bias seed and its query/key head size, 16 + 8*v (value head
size stays 16), so ``attn.qkv.weight`` / ``.bias`` / ``.split`` change shape and the q @ k^T MatMul changes its
reduction length. The attention scale stays 1/sqrt(16) and every other layer stays bit-identical.
"""

from __future__ import annotations

import math

import onnx

from .graph import OUTPUT, GraphBuilder

SEED = 1005
VARIANT_LAYER = "attn.qkv"
TOKENS, DIM, HEADS, HIDDEN = 16, 64, 4, 128


def _layernorm(g: GraphBuilder, x: str, name: str) -> str:
    r = g.rng(name, "ln")
    scale = g.const(name + ".scale", r.uniform(0.8, 1.2, DIM))
    bias = g.const(name + ".bias", r.normal(0.0, 0.05, DIM))
    return g.node("LayerNormalization", [x, scale, bias], name, axis=-1, epsilon=1e-5)


def _linear(g: GraphBuilder, x: str, name: str, fin: int, fout: int, *, output: str | None = None) -> str:
    y = g.node("MatMul", [x, g.weight(name, (fin, fout), fan_in=fin, gain=1.0)], name + ".matmul")
    return g.node("Add", [y, g.bias(name, fout)], name, outputs=[output or name])


def build(*, variant: int = 0, dynamic_batch: bool = False) -> onnx.ModelProto:
    g = GraphBuilder("transformer", SEED, variants={VARIANT_LAYER: variant})
    dqk, dv = DIM // HEADS + 8 * variant, DIM // HEADS
    heads = g.const("attn.heads_shape", [0, 0, HEADS, -1])

    # --- self-attention ---
    x = _layernorm(g, "input", "ln1")
    qkv = _linear(g, x, "attn.qkv", DIM, 2 * HEADS * dqk + HEADS * dv)
    split = g.const("attn.qkv.split", [HEADS * dqk, HEADS * dqk, HEADS * dv])
    q, k, v = g.node("Split", [qkv, split], "attn.split", outputs=["attn.q", "attn.k", "attn.v"], axis=2)
    q = g.node("Transpose", [g.node("Reshape", [q, heads], "attn.q.heads")], "attn.q.t", perm=[0, 2, 1, 3])
    k = g.node("Transpose", [g.node("Reshape", [k, heads], "attn.k.heads")], "attn.k.t", perm=[0, 2, 3, 1])
    v = g.node("Transpose", [g.node("Reshape", [v, heads], "attn.v.heads")], "attn.v.t", perm=[0, 2, 1, 3])
    s = g.node("MatMul", [q, k], "attn.scores")
    s = g.node("Div", [s, g.const("attn.scale", math.sqrt(DIM // HEADS))], "attn.scaled")
    p = g.node("Softmax", [s], "attn.softmax", axis=-1)
    o = g.node("Transpose", [g.node("MatMul", [p, v], "attn.context")], "attn.context.t", perm=[0, 2, 1, 3])
    o = g.node("Reshape", [o, g.const("attn.merge_shape", [0, 0, -1])], "attn.merge")
    h = g.node("Add", ["input", _linear(g, o, "attn.out", HEADS * dv, DIM)], "attn.residual")

    # --- MLP with exact (Erf) GELU ---
    y = _linear(g, _layernorm(g, h, "ln2"), "mlp.fc1", DIM, HIDDEN)
    e = g.node("Erf", [g.node("Div", [y, g.const("gelu.sqrt2", math.sqrt(2.0))], "gelu.div")], "gelu.erf")
    e = g.node("Add", [e, g.const("gelu.one", 1.0)], "gelu.add")
    y = g.node("Mul", [g.node("Mul", [y, e], "gelu.mul"), g.const("gelu.half", 0.5)], "gelu")
    y = _linear(g, y, "mlp.fc2", HIDDEN, DIM)
    g.node("Add", [h, y], "mlp.residual", outputs=[OUTPUT])
    return g.finish([1, TOKENS, DIM], [1, TOKENS, DIM], dynamic_batch=dynamic_batch)

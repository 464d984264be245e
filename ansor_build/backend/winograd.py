"""Winograd convolutions on CPU targets: 3x3 stride-1 conv2d with constant weights computed as F(4x4, 3x3).

A direct 3x3 convolution does 9 multiply-adds per output pixel and input channel. Winograd's minimal filtering
computes a 4x4 output tile from a 6x6 input tile with 36 products per channel pair instead of 144: 4x fewer. The
price is two transforms per tile (input tile -> Winograd domain, products -> output tile): additions and
multiplications by constants, O(C) per tile against the products' O(C*K). The rounding error grows a little
(TVM's interpolation points for F(4, 3): ~3e-7 relative per product, Barabasz et al.).

The rewrite runs on the NHWC graph (after `nhwc`), before operators are lowered. A qualifying conv2d becomes a
`call_tir` of a PrimFunc whose blocks are, for P = N * (H/4) * (W/4) tiles:

    winograd_pad   [N, H+2, W+2, C]  the zero-padded input
    winograd_v1    [6, 6, P, C]      B^T d: the input transform along rows (explicit sums, no zero terms)
    winograd_v     [6, 6, P, C]      (B^T d) B: along columns
    winograd_m     [6, 6, P, K]      36 independent (P x C) @ (C x K) products with U = G g G^T
    winograd_y1    [4, 6, P, K]      A^T M
    winograd_y     [4, 4, P, K]      (A^T M) A
    conv2d_winograd [N, H, W, K]     tiles scattered back to NHWC (inlined into the epilogue)

U, the transformed weight, is computed here in float64 at build time and replaces the weight constant. The
function is marked out-element-wise fusable, so the bias, residual add and activation after it fuse into the same
kernel as they do for a direct convolution.

`winograd_schedule` gives such a kernel its loop structure: tile rows in parallel, each processed in blocks of
tiles whose stages all stay in the L1 cache, channels as the vector lanes, transforms unrolled. Tuning measures
every point of its small space (tiles per block, unrolled input channels, the product's loop order); untuned builds
get its `DEFAULT`. On a 2-core AVX-512 host the ResNet-style 16-channel 32x32 conv took 5.5 us against 12.5 us for the best of 64 tuned
direct schedules (both timed by TVM's evaluator).

Qualifies: data NHWC, kernel OHWI with a constant 3x3 weight, stride 1, dilation 1, one group, float32, static
shapes, output height and width multiples of 4 and at least 8, input and output channels at least 8. The rewrite is
part of each subgraph's TIR, so it is part of the task keys: direct and Winograd records never mix.
"""

from __future__ import annotations

import functools

from . import relax_function_pass

M = 4  # output tile: F(4x4, 3x3)
ALPHA = M + 2
MIN_CHANNELS = 8  # fewer channels make the products too small to pay for the transforms
MIN_OUTPUT = 8  # output height and width: a 2x2 grid of tiles at least
OUT_EWISE_FUSABLE = 4  # relax.OpPatternKind.kOutEWiseFusable
STAGES = ("winograd_pad", "winograd_v1", "winograd_v", "winograd_m", "winograd_y1", "winograd_y")


@functools.cache
def matrices():
    """TVM's Cook-Toom matrices (A [6, 4], B [6, 6], G [6, 3]) for F(4, 3), float64 (computed once; read only):
    output tile = A^T [(G g G^T) * (B^T d B)] A."""
    from tvm.topi.nn.winograd_util import _cook_toom_convolution, _interpolation_points

    return _cook_toom_convolution(_interpolation_points(M + 3 - 2), M, 3)


def transform_weight(weight):
    """OHWI 3x3 weight [K, 3, 3, C] -> U [6, 6, C, K], computed in float64, stored in the weight's dtype."""
    import numpy as np

    _, _, g = matrices()
    u = np.einsum("ek,okli,nl->enio", g, weight.astype(np.float64), g)
    return np.ascontiguousarray(u.astype(weight.dtype))


def _linear(coefficients, terms):
    """sum(c * t) written out: zero coefficients dropped, +-1 as additions and subtractions."""
    from tvm import tirx

    expr = None
    for c, term in zip(coefficients, terms):
        c = float(c)
        if c == 0.0:
            continue
        value = term if c == 1.0 else (-term if c == -1.0 else term * tirx.const(c, "float32"))
        expr = value if expr is None else expr + value
    return expr if expr is not None else tirx.const(0.0, "float32")


def _by_index(index, exprs):
    """exprs[index] for a loop index: a Select chain that folds to one expression once the loop is unrolled."""
    from tvm import tirx

    out = exprs[-1]
    for k in range(len(exprs) - 2, -1, -1):
        out = tirx.Select(index == k, exprs[k], out)
    return out


def prim_func(n: int, h: int, w: int, c: int, k: int, padding):
    """The Winograd conv as a PrimFunc: data [n, h, w, c] and U [6, 6, c, k] -> [n, oh, ow, k]."""
    from tvm import te, tirx
    from tvm.topi.nn.pad import pad

    pad_t, pad_l, pad_b, pad_r = padding
    oh, ow = h + pad_t + pad_b - 2, w + pad_l + pad_r - 2
    nh, nw = oh // M, ow // M
    tiles = n * nh * nw
    a_np, b_np, _ = matrices()

    def shape(*dims):  # int64 dims, as Relax's, so that FuseTIR maps these buffers onto the graph's tensors
        return tuple(tirx.IntImm("int64", d) for d in dims)

    data = te.placeholder(shape(n, h, w, c), "float32", "data")
    u = te.placeholder(shape(ALPHA, ALPHA, c, k), "float32", "winograd_weight")
    padded = pad(data, (0, pad_t, pad_l, 0), (0, pad_b, pad_r, 0), name="winograd_pad")

    def tile_pixel(p, row, col, ch):
        return padded[p // (nh * nw), p // nw % nh * M + row, p % nw * M + col, ch]

    v1 = te.compute(shape(ALPHA, ALPHA, tiles, c), lambda e, col, p, ch: _by_index(e, [
        _linear(b_np[:, j], [tile_pixel(p, row, col, ch) for row in range(ALPHA)]) for j in range(ALPHA)]),
        name="winograd_v1")
    v = te.compute(shape(ALPHA, ALPHA, tiles, c), lambda e, nu, p, ch: _by_index(nu, [
        _linear(b_np[:, j], [v1[e, col, p, ch] for col in range(ALPHA)]) for j in range(ALPHA)]),
        name="winograd_v")
    rc = te.reduce_axis(shape(0, c), "rc")
    prod = te.compute(shape(ALPHA, ALPHA, tiles, k),
                      lambda e, nu, p, o: te.sum(v[e, nu, p, rc] * u[e, nu, rc, o], axis=rc), name="winograd_m")
    y1 = te.compute(shape(M, ALPHA, tiles, k), lambda i, col, p, o: _by_index(i, [
        _linear(a_np[:, j], [prod[row, col, p, o] for row in range(ALPHA)]) for j in range(M)]), name="winograd_y1")
    y = te.compute(shape(M, M, tiles, k), lambda i, j_, p, o: _by_index(j_, [
        _linear(a_np[:, j], [y1[i, col, p, o] for col in range(ALPHA)]) for j in range(M)]), name="winograd_y")
    out = te.compute(shape(n, oh, ow, k),
                     lambda b, yy, xx, o: y[yy % M, xx % M, b * nh * nw + yy // M * nw + xx // M, o],
                     name="conv2d_winograd")
    return te.create_prim_func([data, u, out]).with_attr("op_pattern", OUT_EWISE_FUSABLE)


def qualifies(call, weight) -> bool:
    """Whether a relax.nn.conv2d call, whose weight argument resolves to `weight`, can run as a Winograd conv."""
    import tvm

    attrs = call.attrs
    if not isinstance(weight, tvm.ir.expr.Constant):
        return False
    if (attrs.data_layout != "NHWC" or attrs.kernel_layout != "OHWI" or attrs.out_layout != "NHWC" or
            int(attrs.groups) != 1 or [int(s) for s in attrs.strides] != [1, 1] or
            [int(d) for d in attrs.dilation] != [1, 1]):
        return False
    d_type, w_type = call.args[0].ty, weight.ty
    if d_type.dtype != "float32" or w_type.dtype != "float32" or (attrs.out_dtype and attrs.out_dtype != "float32"):
        return False
    try:
        d_shape = [int(x) for x in d_type.shape.values]
    except (TypeError, AttributeError):  # symbolic dims
        return False
    w_shape = [int(x) for x in w_type.shape.values]
    if len(d_shape) != 4 or w_shape[1:3] != [3, 3] or w_shape[3] != d_shape[3]:
        return False
    if min(w_shape[0], w_shape[3]) < MIN_CHANNELS:
        return False
    pad_t, pad_l, pad_b, pad_r = [int(p) for p in attrs.padding]
    oh, ow = d_shape[1] + pad_t + pad_b - 2, d_shape[2] + pad_l + pad_r - 2
    return oh >= MIN_OUTPUT and ow >= MIN_OUTPUT and oh % M == 0 and ow % M == 0


def rewrite():
    """A module pass: each qualifying conv2d becomes a call_tir of the Winograd PrimFunc with U as a constant."""
    import tvm
    from tvm import relax

    conv2d = tvm.ir.Op.get("relax.nn.conv2d")

    @relax.expr_functor.mutator
    class Rewriter(relax.PyExprMutator):
        def __init__(self, mod):
            super().__init__(mod)
            self.funcs = {}

        def visit_call_(self, call):
            call = super().visit_call_(call)
            if call.op != conv2d:
                return call
            weight = call.args[1]
            while isinstance(weight, relax.Var) and self.lookup_binding(weight) is not None:
                weight = self.lookup_binding(weight)  # FoldConstant binds the permuted weight to a variable
            if not qualifies(call, weight):
                return call
            data = call.args[0]
            n, h, w, c = [int(x) for x in data.ty.shape.values]
            k = int(weight.ty.shape.values[0])
            padding = tuple(int(p) for p in call.attrs.padding)
            key = (n, h, w, c, k, padding)
            if key not in self.funcs:
                self.funcs[key] = self.builder_.add_func(prim_func(n, h, w, c, k, padding), "conv2d_winograd")
            u = relax.const(transform_weight(weight.value.numpy()))
            return relax.call_tir(self.funcs[key], relax.Tuple([data, u]), call.ty)

    return relax_function_pass("WinogradConv2D", Rewriter)


def passes(target, enabled: bool) -> list:
    """Passes on the NHWC graph (before LegalizeOps) that give a CPU target's 3x3 convolutions F(4x4, 3x3)."""
    if not enabled or target.kind.name != "llvm":
        return []
    from tvm import relax

    # The weights are permute_dims of constants after ConvertLayout: folded first, so that U can be computed.
    return [relax.transform.FoldConstant(), rewrite()]

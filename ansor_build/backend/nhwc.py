"""Channels-last convolutions on CPU targets: the model's conv2d run in NHWC with OHWI weights.

ONNX convolutions are NCHW. On a CPU the output channels are the natural vector lanes of a small convolution
(16 to 64 of them; one AVX-512 register holds 16 floats), and only in NHWC are they contiguous, in the output
and in the weight alike. MetaSchedule then finds far better kernels within the same budget: on a 2-core AVX-512
host, 64 trials per task took the small convnet's three convolutions from 12.5 / 23.9 / 11.0 us (NCHW) to
8.2 / 18.2 / 8.8 us.

`ConvertLayout` rewrites every conv2d and carries the layout through the element-wise operators after it; the
model's input is transposed once on the way in and NCHW results are transposed back where an operator that has
no layout rule (or the model's output) needs them. Two things keep the converted graph free of extra transposes:

- constant weight arithmetic (batch norm folded into a convolution) is folded first: `ConvertLayout` fails on
  some of it otherwise (a segfault in TVM 0.27 on the ResNet-style model);
- the ONNX importer lowers Clip (ReLU6) to TIR at import (`emit_te(topi.maximum)`), which `ConvertLayout`
  cannot see through; such calls with a constant scalar bound become `R.maximum` / `R.minimum` again.

The layout is part of each subgraph's TIR, so it is part of the task keys: NCHW and NHWC records never mix.
"""

from __future__ import annotations

from . import relax_function_pass

CONV_LAYOUTS = {"relax.nn.conv2d": ["NHWC", "OHWI"]}
LAYOUTS = ("NHWC", "NCHW")


def passes(target, layout: str) -> list:
    """Passes before LegalizeOps that give a CPU target's convolutions the `layout` (NCHW: none)."""
    from tvm import relax

    if layout not in LAYOUTS:
        raise ValueError(f"conv layout {layout!r} (expected one of {LAYOUTS})")
    if layout == "NCHW" or target.kind.name != "llvm":
        return []
    transform = relax.transform
    return [transform.FoldConstant(), clip_bounds_as_ops(), transform.DeadCodeElimination(),
            transform.ConvertLayout(CONV_LAYOUTS)]


def clip_bounds_as_ops():
    """A module pass: `call_tir` of the importer's topi.maximum / topi.minimum with a constant scalar bound becomes
    `R.maximum` / `R.minimum` (which have layout rules). A call is rewritten only when its PrimFunc is structurally
    the one topi builds for those shapes."""
    import tvm
    import tvm_ffi
    from tvm import relax, te, topi

    call_tir = tvm.ir.Op.get("relax.call_tir")
    kinds = ((topi.maximum, relax.op.maximum), (topi.minimum, relax.op.minimum))

    def reference(te_op, x_type, bound):
        a = te.placeholder(list(x_type.shape.values), x_type.dtype, "a")  # int64 dims, as the importer's
        b = te.placeholder([], bound.ty.dtype, "b")
        return te.create_prim_func([a, b, te_op(a, b)])

    def same(func, ref) -> bool:
        return len(func.params) == len(ref.params) and tvm_ffi.structural_equal(func.body, ref.body, map_free_vars=True)

    @relax.expr_functor.mutator
    class Rewriter(relax.PyExprMutator):
        def __init__(self, mod):
            super().__init__(mod)
            self.mod_ = mod

        def visit_call_(self, call):
            call = super().visit_call_(call)
            if call.op != call_tir or not isinstance(call.args[1], relax.Tuple) or len(call.args[1].fields) != 2:
                return call
            x, bound = call.args[1].fields
            func = self.mod_[call.args[0]]
            x_type = x.ty
            if (not isinstance(bound, tvm.ir.expr.Constant) or not isinstance(bound.ty, relax.TensorType) or
                    not isinstance(x_type, relax.TensorType) or not isinstance(x_type.shape, relax.ShapeExpr) or
                    bound.ty.ndim != 0 or bound.ty.dtype != x_type.dtype or
                    not all(isinstance(d, tvm.tirx.IntImm) for d in x_type.shape.values)):
                return call
            for te_op, relax_op in kinds:
                if same(func, reference(te_op, x_type, bound)):
                    return relax_op(x, bound)
            return call

    return relax_function_pass("ClipBoundsAsOps", Rewriter)

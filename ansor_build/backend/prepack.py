"""Weight prepacking on CPU targets: constant weights get the layout the tuned kernel reads, at build time.

Before tuning, every fused subgraph's constant-weight parameters are marked layout-free
(`AttachAttrLayoutFreeBuffers`), so MetaSchedule's `RewriteLayout` postprocessor may give them whatever layout the
schedule tiles best (a blocked, vector-contiguous weight for a conv instead of OIHW). A schedule that does so reads
its weight through a layout-rewrite block; after the records are applied, that block is split into its own
function (`SplitLayoutRewritePreproc`) and evaluated on the constants by `FoldConstant`, so the packaged model
carries the weights already packed and no inference pays for the transform.

The layout-free marks are part of each subgraph's TIR, so they are part of its task key: records tuned with and
without prepacking never mix.
"""

from __future__ import annotations


def enabled(target) -> bool:
    """CPU targets only: GPU kernels here read weights as they are (dlight / MetaSchedule CUDA schedules)."""
    return target.kind.name == "llvm"


def before_tuning(target) -> list:
    """Passes on the fused module that let tuning choose the layout of constant weights."""
    from tvm import relax

    return [relax.transform.AttachAttrLayoutFreeBuffers()] if enabled(target) else []


def after_applying(target) -> list:
    """Passes on the module with records applied that move weight layout transforms to build time."""
    from tvm import relax

    if not enabled(target):
        return []
    # FoldConstant leaves tuples of the packed constants and the now-unused packing functions behind.
    return [relax.transform.SplitLayoutRewritePreproc(), relax.transform.FoldConstant(),
            relax.transform.CanonicalizeBindings(), relax.transform.DeadCodeElimination()]

"""The one door to Apache TVM: every `import tvm` of ansor-build goes through this package.

TVM's Python API moves between releases (0.27 removed auto_scheduler, relay and TVMC, moved meta_schedule under s_tir
and structural_hash into tvm_ffi); keeping the calls here makes the next release a small change.
Nothing here is imported when the SCons tool loads: importing TVM costs ~1-2 s.
"""

from __future__ import annotations

import os


def import_tvm(threads: int | None = None):
    """Import TVM, first setting TVM_NUM_THREADS (TVM reads it once; on x86 it defaults to half the CPUs)."""
    if threads and "TVM_NUM_THREADS" not in os.environ:
        os.environ["TVM_NUM_THREADS"] = str(threads)
    import tvm  # noqa: PLC0415

    return tvm


def versions() -> dict[str, str]:
    """Versions of the TVM packages, read without importing TVM (cheap; part of every cache key)."""
    from importlib import metadata

    out = {}
    for dist in ("apache-tvm", "apache-tvm-ffi"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def make_target(spec: dict):
    """A `tvm.target.Target` from the dict form of a target description's `tvm` section."""
    tvm = import_tvm()
    spec = dict(spec)
    host = spec.pop("host", None)
    if host is not None:
        return tvm.target.Target(spec, host=tvm.target.Target(host))
    return tvm.target.Target(spec)


def relax_function_pass(name: str, rewriter_class):
    """A module pass that runs a Relax `PyExprMutator` subclass (built with the module) over every Relax function."""
    tvm = import_tvm()
    from tvm import relax

    @tvm.transform.module_pass(opt_level=0, name=name)
    def apply(mod, _ctx):
        rewriter = rewriter_class(mod)
        for gvar, func in mod.functions_items():
            if isinstance(func, relax.Function):
                rewriter.builder_.update_func(gvar, rewriter.visit_expr(func))
        return rewriter.builder_.get()

    return apply

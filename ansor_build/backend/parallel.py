"""The package's own thread pool (`parallel_pool.cc`), linked into every CPU model.so.

TVM's pool costs ~0.65 us per parallel kernel on a host where a system call costs ~0.45 us; this one ~0.2 us (see
the source for how it takes over the kernels' launches). `ANSOR_THREAD_POOL=tvm` in a package's environment gives
TVM's pool back, for comparison.
"""

from __future__ import annotations

from pathlib import Path

SOURCE = Path(__file__).with_name("parallel_pool.cc")
# The kernels' pointers to the parallel runtime: kept out of model.so's dynamic symbols, so that TVM's loader does
# not point them at its own pool after the library's constructor pointed them at this one.
HIDDEN = ("__TVMBackendParallelLaunch", "__TVMBackendParallelBarrier")
VERSION_SCRIPT = "ansor_parallel_pool.map"


def link_inputs(workdir: Path) -> tuple[list[str], list[str]]:
    """(files, options) to add to the link of a model.so: the pool's source, compiled by the link command with the
    target's compiler and flags (objects record only its base name, so checkouts at other paths link the same
    bytes), and a version script, written to `workdir`, that hides the kernels' pointers."""
    script = Path(workdir) / VERSION_SCRIPT
    script.write_text("{ local: %s; };\n" % "; ".join(HIDDEN), encoding="ascii")
    # -g0 after the target's flags: debug info would record the directory the link ran in.
    return [str(SOURCE)], ["-fno-exceptions", "-fno-rtti", "-g0", f"-Wl,--version-script={script}"]

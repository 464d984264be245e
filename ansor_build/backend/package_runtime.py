"""Runtime code linked into every CPU model.so: the package's thread pool (`parallel_pool.cc`) and workspace
allocator (`workspace.cc`), in place of TVM's.

LLVM-compiled kernels reach TVM's parallel runtime and workspace pool through pointers in model.so that TVM's
loader fills in. The link hides those pointers from the loader (a version script), and the sources' constructors
point them at their own code; see each source for why it is faster. `ANSOR_THREAD_POOL=tvm` and
`ANSOR_WORKSPACE=tvm` in a package's environment give TVM's back, for comparison.
"""

from __future__ import annotations

from pathlib import Path

SOURCES = (Path(__file__).with_name("parallel_pool.cc"), Path(__file__).with_name("workspace.cc"))
# The kernels' pointers: kept out of model.so's dynamic symbols, so that TVM's loader does not point them at its own
# runtime after the library's constructors pointed them at the package's.
HIDDEN = ("__TVMBackendParallelLaunch", "__TVMBackendParallelBarrier",
          "__TVMBackendAllocWorkspace", "__TVMBackendFreeWorkspace")
VERSION_SCRIPT = "ansor_package_runtime.map"


def link_inputs(workdir: Path) -> tuple[list[str], list[str]]:
    """(files, options) to add to the link of a model.so: the sources, compiled by the link command with the
    target's compiler and flags (objects record only their base names, so checkouts at other paths link the same
    bytes), and a version script, written to `workdir`, that hides the kernels' pointers."""
    script = Path(workdir) / VERSION_SCRIPT
    script.write_text("{ local: %s; };\n" % "; ".join(HIDDEN), encoding="ascii")
    # -g0 after the target's flags: debug info would record the directory the link ran in.
    return [str(source) for source in SOURCES], ["-fno-exceptions", "-fno-rtti", "-g0",
                                                 f"-Wl,--version-script={script}"]

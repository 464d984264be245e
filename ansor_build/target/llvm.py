"""Checking a target's LLVM names (`mtriple`, `mcpu`) against the LLVM built into TVM.

LLVM takes an unknown `-mcpu` with a warning and compiles for its generic CPU, and a package whose manifest names a
CPU its code was never tuned or compiled for; an unknown triple crashes TVM (a segfault when listing its CPUs). The
check needs TVM (importing it costs seconds), so it runs where a build already imports TVM, not when a target loads:
`check_llvm_names(target)` before the target becomes a `tvm.target.Target`.
"""

from __future__ import annotations

import difflib
import functools
from typing import Callable, Sequence

from ..errors import InputError
from .show import shown, text_of

TRIPLE_EXAMPLES = "x86_64-linux-gnu, aarch64-linux-gnu, armv7l-linux-gnueabihf"


@functools.lru_cache(maxsize=None)
def tvm_cpu_names(triple: str) -> tuple[str, ...] | None:
    """The CPU names the LLVM of TVM knows for `triple` (`llc -mtriple=TRIPLE -mcpu=help`); None when it has no
    target for the triple. Imports TVM."""
    from ..backend import import_tvm

    tvm = import_tvm()
    from tvm.target import codegen

    if not codegen.llvm_is_valid_cpu("generic", triple):  # asked first: listing the CPUs of a bad triple crashes
        return None
    names = set(codegen.llvm_get_cpu_archlist(tvm.target.Target({"kind": "llvm", "mtriple": triple})))
    return tuple(sorted(names | {"generic"}))


def cpu_parts(target) -> list[tuple[str, dict]]:
    """(key path, tvm mapping) of each part of `target` that runs on a CPU: `tvm` of an llvm target, `tvm.host` of a
    cuda target."""
    if target.kind == "llvm":
        return [("tvm", target.tvm)]
    host = target.tvm.get("host")
    return [("tvm.host", host)] if isinstance(host, dict) and host.get("kind", "llvm") == "llvm" else []


def check_llvm_names(target, cpu_names: Callable[[str], Sequence[str] | None] = tvm_cpu_names) -> None:
    """Raise InputError when a CPU part of `target` names a triple LLVM has no target for, or a CPU it does not know
    for the triple.

    `cpu_names(triple)` lists the CPUs of a triple, None for an unknown triple (default: TVM's LLVM, which this
    imports). The error names the file that set the key (the target file or one it extends).
    """
    for where, part in cpu_parts(target):
        triple = part.get("mtriple")
        if not triple:
            continue  # load_target requires it; nothing to check against
        names = cpu_names(triple)
        if names is None:
            raise InputError(f"{_origin(target, where + '.mtriple')}: {where}.mtriple: {shown(triple, 80)} is not a "
                             f"triple LLVM can compile for (e.g. {TRIPLE_EXAMPLES})")
        mcpu = part.get("mcpu")
        if mcpu is None or mcpu in names:
            continue
        close = difflib.get_close_matches(mcpu, list(names), n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise InputError(f"{_origin(target, where + '.mcpu')}: {where}.mcpu: {shown(mcpu, 80)} is not a CPU LLVM "
                         f"knows for {text_of(triple, 80)}{hint} (see `llc -mtriple={text_of(triple, 80)} -mcpu=help`)")


def _origin(target, keypath: str) -> str:
    origins = getattr(target, "origins", None) or {}
    return text_of(str(origins.get(keypath, target.path)), 300)

"""Finding the TVM runtime libraries that a package carries to its device."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import InputError
from .layout import RUNTIME_LIBS


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"Python package '{name}' is not installed (pip install apache-tvm)")
    return Path(list(spec.submodule_search_locations)[0])


def host_library(name: str) -> Path:
    """A runtime library of this machine's TVM installation (for targets whose device runs the host's arch)."""
    tvm_dir = _package_dir("tvm")
    ffi_dir = _package_dir("tvm_ffi")
    candidates = [ffi_dir / "lib" / name] if name == "libtvm_ffi.so" else [tvm_dir / "lib" / name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise InputError(f"TVM runtime library '{name}' not found (looked at {', '.join(map(str, candidates))})")


def runtime_libraries(target) -> dict[str, Path]:
    """File name -> source path of every runtime library the package for `target` carries."""
    if target.runtime_libs == "none":
        return {}
    if not target.runs_on_host:
        raise InputError(f"{target.path}: runtime.libs: 'host' libraries are {_host()} code, the target runs "
                         f"{target.arch}; set runtime.libs to a source for {target.arch} or 'none'")
    return {name: host_library(name) for name in RUNTIME_LIBS[target.device]}


def _host() -> str:
    import platform

    return platform.machine()

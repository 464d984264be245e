"""Finding the TVM runtime libraries that a package carries to its device.

`runtime.libs` says where they come from:
- `host`: this machine's TVM installation (only for a device of this machine's architecture); a GPU package's
  CUDA runtime (libcudart) comes from the CUDA toolkit whose nvcc compiles the device code;
- `wheel`: the official PyPI wheels for the device's architecture (see `wheels`);
- `none`: the device provides them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import InputError
from ..toolchain import cuda_toolkit_root, host_arch
from .layout import RUNTIME_LIBS
from .wheels import wheel_library


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"Python package '{name}' is not installed (pip install apache-tvm)")
    return Path(list(spec.submodule_search_locations)[0])


def cuda_toolkit_library(name: str, nvcc: str) -> Path:
    """A CUDA runtime library of the toolkit that `nvcc` belongs to (lib64/, lib/ or targets/<arch>-linux/lib/)."""
    root = cuda_toolkit_root(nvcc)
    candidates = [root / "lib64" / name, root / "lib" / name, root / "targets" / f"{host_arch()}-linux" / "lib" / name]
    spec = importlib.util.find_spec("nvidia")
    if spec is not None and spec.submodule_search_locations:  # pip's nvidia-cuda-runtime
        candidates += [Path(p) / "cu13" / "lib" / name for p in spec.submodule_search_locations]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise InputError(f"CUDA runtime library '{name}' not found next to {nvcc} (looked at "
                     f"{', '.join(map(str, candidates))}); install the CUDA runtime or set runtime.libs: wheel")


def host_library(name: str, nvcc: str | None = None) -> Path:
    """A runtime library of this machine's TVM installation (for targets whose device runs the host's arch)."""
    if name.startswith("libcudart"):
        if nvcc is None:
            raise InputError(f"'{name}' comes from the CUDA toolkit: no nvcc given")
        return cuda_toolkit_library(name, nvcc)
    tvm_dir = _package_dir("tvm")
    ffi_dir = _package_dir("tvm_ffi")
    candidates = [ffi_dir / "lib" / name] if name == "libtvm_ffi.so" else [tvm_dir / "lib" / name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise InputError(f"TVM runtime library '{name}' not found (looked at {', '.join(map(str, candidates))})")


def runtime_libraries(target, nvcc: str | None = None) -> dict[str, Path]:
    """File name -> source path of every runtime library the package for `target` carries.

    `nvcc` (GPU targets with `libs: host`) locates the CUDA runtime library of its toolkit.
    """
    names = RUNTIME_LIBS[target.device]
    if target.runtime_libs == "none":
        return {}
    if target.runtime_libs == "wheel":
        try:
            return {name: wheel_library(name, target.arch) for name in names}
        except InputError as err:
            raise InputError(f"{target.path}: {err}") from None
    if not target.runs_on_host:
        raise InputError(f"{target.path}: runtime.libs: 'host' libraries are {host_arch()} code, the target runs "
                         f"{target.arch}; set runtime.libs to 'wheel' (PyPI's {target.arch} wheels) or 'none'")
    return {name: host_library(name, nvcc) for name in names}

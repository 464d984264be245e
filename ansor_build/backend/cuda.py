"""CUDA device code at build time: the kernels' CUDA C compiled by nvcc into a fatbin that model.so embeds.

Without this, TVM 0.27 on a build host without a GPU driver exports the kernels as CUDA C source that the device
compiles when the model loads (it needs nvcc or NVRTC there). Here the source is compiled with TVM's own nvcc
recipe (`tvm.support.nvcc.compile_cuda`, the flags TVM uses at load time) into a fatbin holding SASS for
`tvm.arch` (and PTX for it, which newer GPUs compile when loading, unless `runtime.ptx: false`), and the packed
module is rewritten to carry it (see `device_blob`). The device then needs the NVIDIA driver only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ToolError
from . import device_blob, import_tvm

# Set while compiling a GPU target: TVM keeps the CUDA source (format "cuda") even when its CUDA runtime is
# loaded (a build host with a GPU), so that every host packages the same nvcc-compiled device code.
FORCE_SOURCE_ENV = "TVM_COMPILE_FORCE_FALLBACK"


@dataclass
class DeviceCode:
    """How a GPU target's kernels become device code, and (after export) what was embedded."""

    nvcc: str
    arch: str  # e.g. sm_80
    ptx: bool = True
    log_path: Path | None = None
    embedded: list[dict] = field(default_factory=list)

    def gencode(self) -> list[str]:
        """nvcc flags: SASS for the arch, and its PTX when asked for."""
        number = self.arch.split("_", 1)[1]
        flags = ["-gencode", f"arch=compute_{number},code=sm_{number}"]
        if self.ptx:
            flags += ["-gencode", f"arch=compute_{number},code=compute_{number}"]
        return flags

    def summary(self) -> dict:
        """The manifest's `device_code` entry."""
        number = self.arch.split("_", 1)[1]
        return {"format": "fatbin", "sass": [f"sm_{number}"], "ptx": [f"compute_{number}"] if self.ptx else [],
                "nvcc": nvcc_version(self.nvcc), "modules": self.embedded}


@contextlib.contextmanager
def source_kept(target):
    """While compiling for a GPU target, make TVM keep the kernels' CUDA source (see FORCE_SOURCE_ENV)."""
    if target.kind.name != "cuda" or FORCE_SOURCE_ENV in os.environ:
        yield
        return
    os.environ[FORCE_SOURCE_ENV] = "1"
    try:
        yield
    finally:
        os.environ.pop(FORCE_SOURCE_ENV, None)


def nvcc_version(nvcc: str) -> str:
    """`13.0.88` from `nvcc --version` ("Cuda compilation tools, release 13.0, V13.0.88")."""
    proc = subprocess.run([nvcc, "--version"], capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    match = re.search(r"release [\d.]+, V([\d.]+)", proc.stdout)
    return match.group(1) if match else "unknown"


def cuda_sources(module) -> list[str]:
    """The CUDA C source of every CUDA module in the import tree of `module`."""
    found, stack, seen = [], [module], set()
    while stack:
        mod = stack.pop()
        if mod in seen:
            continue
        seen.add(mod)
        if mod.kind == "cuda":
            found.append(mod.inspect_source())
        stack.extend(mod.imports)
    return found


def compile_source(source: str, tvm_target, device: DeviceCode) -> bytes:
    """nvcc `source` into a fatbin with TVM's recipe; a failure keeps nvcc's output in `device.log_path`."""
    import_tvm()
    from tvm.support import nvcc

    path = os.environ.get("PATH", "")
    with tempfile.TemporaryDirectory(prefix="ansor-nvcc-") as shim:
        # TVM runs `nvcc` by name: put the target's nvcc first on PATH under that name. A script that execs it by
        # its own path, not a symlink: nvcc finds its toolkit (cuda_runtime.h, nvcc.profile) from the path it was
        # run as, and through a symlink in another directory a standard /usr/local/cuda install finds no headers.
        _write_exec_shim(os.path.join(shim, "nvcc"), device.nvcc)
        os.environ["PATH"] = os.pathsep.join([shim, path])
        try:
            with tvm_target:
                return bytes(nvcc.compile_cuda(source, target_format="fatbin", arch=device.gencode(),
                                               compiler="nvcc"))
        except RuntimeError as err:
            failure = str(err)
        finally:
            os.environ["PATH"] = path
    _raise_nvcc_failure(failure, device)


def _write_exec_shim(path: str, program: str) -> None:
    with open(path, "w", encoding="utf-8") as shim:
        shim.write(f"#!/bin/sh\nexec {shlex.quote(program)} \"$@\"\n")
    os.chmod(path, 0o755)


def _raise_nvcc_failure(text: str, device: DeviceCode):

    """A one-line ToolError for a failed nvcc run; the full output (TVM puts the source first) goes to the log."""
    output = text.split("\nCompilation error:\n", 1)[-1]
    if device.log_path is not None:
        device.log_path.write_text(text, encoding="utf-8")
    detail = next((line.strip() for line in output.splitlines() if "error" in line.lower()), output.strip()[:200])
    raise ToolError("compiling CUDA device code", [device.nvcc, "--fatbin", *device.gencode()], None,
                    str(device.log_path) if device.log_path else None, detail=detail[:300])


def _host_target_string(module) -> str:
    """The LLVM target of the host code, for packing the blob into an object file of the device's CPU."""
    stack = [module]
    while stack:
        mod = stack.pop()
        if mod.kind == "llvm":
            return mod.get_function("_get_target_string")()
        stack.extend(mod.imports)
    raise ToolError("packing CUDA device code", "export_library", None, detail="the module has no LLVM host code")


def pack_imports_with_device_code(tvm_target, device: DeviceCode):
    """An `fpack_imports` for `export_library`: TVM's packed blob, its CUDA sources swapped for nvcc fatbins."""

    def pack(module, is_system_lib, symbol_prefix, workspace_dir):
        import_tvm()
        import tvm_ffi

        sources = cuda_sources(module)
        compiled = {source.encode(): compile_source(source, tvm_target, device) for source in sources}
        data = tvm_ffi.get_global_func("runtime.ModulePackImportsToTensor")(module).numpy().tobytes()
        data, replaced = device_blob.replace_cuda_sources(data, compiled)
        if replaced != len(sources):
            raise ToolError("packing CUDA device code", "export_library", None,
                            detail=f"replaced {replaced} of {len(sources)} CUDA modules")
        device.embedded = sorted(({"sha256": hashlib.sha256(fatbin).hexdigest(), "size": len(fatbin)}
                                  for fatbin in compiled.values()), key=lambda entry: entry["sha256"])
        # What export_library does with TVM's own blob: an object file of the host CPU holding it.
        codegen_blob = tvm_ffi.get_global_func("codegen.codegen_blob")
        llvm_module = codegen_blob(data, is_system_lib, _host_target_string(module), symbol_prefix)
        path = os.path.join(workspace_dir, f"{symbol_prefix}devc.o")
        llvm_module.write_to_file(path)
        return path

    return pack

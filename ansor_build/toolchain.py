"""The build host's tools for a target: its C++ (cross) compiler, nvcc, and the emulator that runs device binaries.

Each lookup fails with one line naming the target file, the key, what was not found and how to install it.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

from .errors import InputError

_ARCH_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}

# Install hints used when a target names a tool but not the package that provides it.
NVCC_HINT = ("the CUDA 13 toolkit (NVIDIA's cuda-toolkit-13-0, or pip install 'nvidia-cuda-nvcc==13.0.*' and put "
             "its bin/ on PATH), or set toolchain.nvcc to nvcc's path")


def host_arch() -> str:
    """This machine's CPU architecture in the spelling of target triples (x86_64, aarch64)."""
    machine = platform.machine().lower()
    return _ARCH_ALIASES.get(machine, machine)


def _find(what: str, command: str, target, key: str, hint: str | None) -> str:
    found = shutil.which(command)
    if found:
        return found
    advice = f"; install it with: {hint}" if hint else ""
    raise InputError(f"{target.path}: {key}: {what} '{command}' not found on PATH{advice}")


def _apt(package: str | None) -> str | None:
    return f"apt-get install {package}" if package else None


def find_compiler(target) -> str:
    """The absolute path of the C++ compiler that links model.so and the runner (`toolchain.cxx`)."""
    return _find("C++ compiler", target.cxx, target, "toolchain.cxx", _apt(target.debian_package))


def find_nvcc(target) -> str:
    """The absolute path of the CUDA compiler that turns a GPU target's kernels into device code."""
    return _find("CUDA compiler", target.nvcc, target, "toolchain.nvcc", target.nvcc_package or NVCC_HINT)


def emulator_command(target) -> list[str] | None:
    """`toolchain.emulator` with its program resolved, or None when the target's binaries run natively.

    Raises InputError when the package cannot run here: another architecture and no emulator, or a missing one.
    """
    if target.arch == host_arch():
        return None
    emulator = target.emulator
    if not emulator:
        raise InputError(f"{target.path}: toolchain.emulator: not set; {target.arch} packages cannot run on this "
                         f"{host_arch()} machine without one (e.g. [qemu-{target.arch}, -L, /usr/{target.triple}])")
    program = _find("emulator", emulator[0], target, "toolchain.emulator", _apt(target.emulator_package))
    return [program, *emulator[1:]]



def cuda_toolkit_root(nvcc: str) -> Path:
    """The root of the CUDA toolkit that `nvcc` belongs to (nvcc may be a wrapper script elsewhere).

    Asks nvcc itself (`--dryrun` prints `#$ TOP=<root>/bin/..`); falls back to the directory above nvcc's.
    """
    proc = subprocess.run([nvcc, "--dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull], capture_output=True,
                          text=True, env={**os.environ, "LC_ALL": "C"})
    match = re.search(r"^#\$ TOP=(.+)$", proc.stdout + proc.stderr, re.MULTILINE)
    if match:
        return Path(os.path.realpath(match.group(1).strip()))
    return Path(os.path.realpath(nvcc)).parent.parent

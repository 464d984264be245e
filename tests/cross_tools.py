"""Helpers of the cross tier: required tools, collected numbers, and for GPU packages: is there a GPU here, where is
cuobjdump, what device code does a file embed."""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

# Filled by the tests, printed at the end of the run by tests/cross/conftest.py.
BUILD_TIMES: dict[tuple[str, str], float] = {}
DIFFS: dict[str, float] = {}


def require_tool(command: str, install: str) -> str:
    """The tool's path; a missing tool skips the test locally and fails it in CI (scripts/setup.sh installs it)."""
    found = shutil.which(command)
    if found:
        return found
    message = f"{command} not found (install: {install}; scripts/setup.sh does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)

FATBIN_MAGIC = struct.pack("<I", 0xBA55ED50)


def cuda_gpu() -> tuple[str | None, str]:
    """("sm_XY" of GPU 0, "") when an NVIDIA GPU and its driver are usable here, else (None, why not)."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None, "no NVIDIA driver on this machine (libcuda.so.1 cannot be loaded)"
    if cuda.cuInit(0) != 0:
        return None, "the NVIDIA driver is present but cuInit failed (no usable GPU)"
    count = ctypes.c_int(0)
    if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return None, "no CUDA device found"
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, 0)  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
    cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, 0)  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR
    return f"sm_{major.value}{minor.value}", ""


def cuobjdump() -> str | None:
    """cuobjdump on PATH, else the one of pip's nvidia-cuda-cuobjdump (the test extra)."""
    found = shutil.which("cuobjdump")
    if found:
        return found
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations if spec and spec.submodule_search_locations else []):
        candidate = Path(root) / "cu13" / "bin" / "cuobjdump"
        if candidate.is_file():
            return str(candidate)
    return None


def embedded_fatbins(data: bytes) -> list[bytes]:
    """Every CUDA fat binary inside `data` (header: magic u32, version u16, header size u16, payload size u64)."""
    found, start = [], data.find(FATBIN_MAGIC)
    while start >= 0:
        _, _, header_size, payload_size = struct.unpack_from("<IHHQ", data, start)
        end = start + header_size + payload_size
        if header_size == 16 and end <= len(data):
            found.append(data[start:end])
            start = data.find(FATBIN_MAGIC, end)
        else:
            start = data.find(FATBIN_MAGIC, start + 4)
    return found


def list_device_code(tool: str, fatbin: Path) -> dict[str, list[str]]:
    """{"elf": [sm_XY, ...], "ptx": [sm_XY, ...]} from `cuobjdump --list-elf --list-ptx`."""
    proc = subprocess.run([tool, "--list-elf", "--list-ptx", str(fatbin)], capture_output=True, text=True, check=True)
    out: dict[str, list[str]] = {"elf": [], "ptx": []}
    for line in proc.stdout.splitlines():
        kind = "elf" if line.startswith("ELF file") else "ptx" if line.startswith("PTX file") else None
        if kind:
            out[kind].append(line.rsplit(".", 2)[-2])  # "ELF file 1: name.1.sm_80.cubin" -> sm_80
    return out

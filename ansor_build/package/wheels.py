"""Runtime libraries for another CPU architecture, taken from the official PyPI wheels and cached.

The TVM libraries come from the wheels of exactly the apache-tvm / apache-tvm-ffi versions installed here (the
model was compiled by them), the CUDA runtime from NVIDIA's nvidia-cuda-runtime wheel. Downloaded with
`pip download --no-deps --only-binary=:all: --platform ... --python-version ...`; only the libraries are kept.

Cache: `<cache_dir>/wheels/<key>/` holds the libraries and `key.txt`. The key hashes the inputs known before the
download (distribution, version, platform tags, Python version, `SCHEMA`); `key.txt` also records what was
downloaded: the wheel's file name and sha256, and each library's sha256.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..cache import cache_dir
from ..errors import InputError, ToolError

log = logging.getLogger(__name__)

SCHEMA = 1

# The CUDA runtime that TVM 0.27's libtvm_runtime_cuda.so links (libcudart.so.13); bump with TVM's CUDA major.
CUDA_RUNTIME_VERSION = "13.0.96"


@dataclass(frozen=True)
class WheelLib:
    """One library and where it is inside which distribution's wheel."""

    name: str
    dist: str
    member: str


LIBRARIES = {
    "libtvm_runtime.so": WheelLib("libtvm_runtime.so", "apache-tvm", "tvm/lib/libtvm_runtime.so"),
    "libtvm_runtime_cuda.so": WheelLib("libtvm_runtime_cuda.so", "apache-tvm", "tvm/lib/libtvm_runtime_cuda.so"),
    "libtvm_ffi.so": WheelLib("libtvm_ffi.so", "apache-tvm-ffi", "tvm_ffi/lib/libtvm_ffi.so"),
    "libcudart.so.13": WheelLib("libcudart.so.13", "nvidia-cuda-runtime", "nvidia/cu13/lib/libcudart.so.13"),
}

# pip matches --platform tags exactly: list every manylinux tag the wheels of an arch use (newest glibc first).
_GLIBC_TAGS = ("2_28", "2_27", "2_24", "2_17")


def platform_tags(arch: str) -> list[str]:
    """pip `--platform` values for Linux wheels of `arch` (x86_64, aarch64)."""
    if arch not in ("x86_64", "aarch64"):
        raise InputError(f"runtime.libs: 'wheel': PyPI has no TVM wheels for {arch} (only x86_64 and aarch64); "
                         f"use runtime.libs: none and provide the runtime on the device")
    return [*(f"manylinux_{tag}_{arch}" for tag in _GLIBC_TAGS), f"manylinux2014_{arch}"]


def dist_version(dist: str) -> str:
    """The version to download: the installed one for TVM's packages, the pinned one for the CUDA runtime."""
    if dist == "nvidia-cuda-runtime":
        return CUDA_RUNTIME_VERSION
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        raise InputError(f"runtime.libs: 'wheel': {dist} is not installed here (pip install {dist})") from None


def _python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def key_inputs(dist: str, version: str, arch: str) -> list[tuple[str, str]]:
    return [("schema", str(SCHEMA)), ("requirement", f"{dist}=={version}"),
            ("platforms", " ".join(platform_tags(arch))), ("python", _python_version())]


def _download(dist: str, version: str, arch: str, into: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "--python-version", _python_version(), "-d", str(into)]
    for tag in platform_tags(arch):
        command += ["--platform", tag]
    command.append(f"{dist}=={version}")
    log.info("downloading %s==%s for %s from PyPI", dist, version, arch)
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
        raise ToolError(f"downloading the {arch} wheel of {dist}", command, proc.returncode,
                        detail=lines[-1].strip()[:300] if lines else "no output")
    wheels = sorted(into.glob("*.whl"))
    if len(wheels) != 1:
        raise ToolError(f"downloading the {arch} wheel of {dist}", command, proc.returncode,
                        detail=f"expected one wheel, found {len(wheels)}")
    return wheels[0]


def _fill_entry(dist: str, version: str, arch: str, inputs, entry: Path) -> None:
    """Download the wheel and extract its libraries into `entry` (atomically: a temporary sibling, renamed)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fill-", dir=entry.parent) as tmp:
        tmp = Path(tmp)
        wheel = _download(dist, version, arch, tmp / "download")
        stage = tmp / "entry"
        stage.mkdir()
        lines = [f"{name}: {value}" for name, value in inputs]
        lines += [f"wheel: {wheel.name}", f"wheel sha256: {hashlib.sha256(wheel.read_bytes()).hexdigest()}"]
        with zipfile.ZipFile(wheel) as archive:
            members = set(archive.namelist())
            for lib in LIBRARIES.values():
                if lib.dist != dist or lib.member not in members:
                    continue
                data = archive.read(lib.member)
                (stage / lib.name).write_bytes(data)
                lines.append(f"library {lib.name}: {lib.member} sha256 {hashlib.sha256(data).hexdigest()}")
        (stage / "key.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            os.replace(stage, entry)
        except OSError:
            if not (entry / "key.txt").is_file():  # not another build that filled it first
                raise


def wheel_library(name: str, arch: str) -> Path:
    """The cached path of runtime library `name` for `arch`, downloading its wheel on first use."""
    lib = LIBRARIES.get(name)
    if lib is None:
        raise InputError(f"runtime.libs: 'wheel': no wheel is known to provide {name}")
    version = dist_version(lib.dist)
    inputs = key_inputs(lib.dist, version, arch)
    key = hashlib.sha256("".join(f"{k}: {v}\n" for k, v in inputs).encode()).hexdigest()[:32]
    entry = cache_dir() / "wheels" / key
    if not (entry / "key.txt").is_file():
        if entry.exists():
            shutil.rmtree(entry, ignore_errors=True)  # an entry without its key file is incomplete
        _fill_entry(lib.dist, version, arch, inputs, entry)
    path = entry / name
    if not path.is_file():
        raise InputError(f"runtime.libs: 'wheel': {lib.dist}=={version} for {arch} has no {lib.member} "
                         f"(see {entry / 'key.txt'})")
    return path

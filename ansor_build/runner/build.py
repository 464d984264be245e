"""Build the C++ runner (``bin/ansor_runner``) shipped in every package.

The runner is written against the tvm_ffi headers (and dlpack) only, which are architecture
independent, so the same include directories serve native and cross builds: pass
``cxx="aarch64-linux-gnu-g++"`` and a ``runtime_dir`` holding the aarch64 ``libtvm_runtime.so`` and
``libtvm_ffi.so`` to cross-build.

The output is byte-deterministic: no debug info, no __DATE__/__TIME__, source/include paths
remapped with ``-ffile-prefix-map``, a fixed ``-frandom-seed``, and a stripped binary.

Importing this module does not import tvm or tvm_ffi.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

from ansor_build.errors import InputError, ToolError

RUNNER_SOURCE_DIR = Path(__file__).resolve().parent
RUNNER_MAIN = RUNNER_SOURCE_DIR / "ansor_runner.cc"

# Libraries the runner links against; they must be in runtime_dir (and in PKG/runtime at run time).
RUNTIME_LIBS = ("libtvm_runtime.so", "libtvm_ffi.so")

# Flags that decide the bytes of the binary (besides the sources, the compiler and runtime_dir).
BASE_FLAGS = (
    "-O2",
    "-std=c++17",
    "-g0",
    "-s",
    "-frandom-seed=ansor_runner",
    "-Wall",
)
LINK_FLAGS = (
    "-Wl,--no-as-needed",  # the runtime registers the VM loader: it must be loaded although unreferenced
    "-ltvm_runtime",
    "-ltvm_ffi",
    "-Wl,--as-needed",
    "-ldl",
    "-Wl,-rpath,$ORIGIN/../runtime",
)


def runner_sources() -> list[Path]:
    """Files whose content is part of the runner's cache key (sources, headers, and this build script)."""
    files = sorted(p for p in RUNNER_SOURCE_DIR.iterdir() if p.suffix in (".cc", ".h") and p.is_file())
    return files + [Path(__file__).resolve()]


def tvm_ffi_include_dirs() -> list[Path]:
    """Include directories for the tvm_ffi C++ headers and dlpack, found without importing tvm_ffi."""
    spec = importlib.util.find_spec("tvm_ffi")
    candidates: list[Path] = []
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(list(spec.submodule_search_locations)[0]) / "include")
    for inc in candidates:
        if (inc / "tvm" / "ffi" / "tvm_ffi.h").is_file() and (inc / "dlpack" / "dlpack.h").is_file():
            return [inc]
    # Fall back to the package's own lookup (imports tvm_ffi, which loads libtvm_ffi).
    try:
        from tvm_ffi import libinfo  # noqa: PLC0415
    except ImportError as err:
        raise InputError(f"cannot build the runner: the tvm_ffi package is not importable ({err})") from None
    dirs: list[Path] = []
    for d in (libinfo.find_include_path(), libinfo.find_dlpack_include_path()):
        p = Path(d)
        if p not in dirs:
            dirs.append(p)
    return dirs


def _first_error_line(log: str) -> str:
    for line in log.splitlines():
        if "error" in line.lower():
            return line.strip()[:300]
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def runner_command(out_path: Path, *, cxx: str = "g++", runtime_dir: Path, extra_flags: Sequence[str] = (),
                   sysroot: str | None = None) -> list[str]:
    """The compiler command line that :func:`build_runner` runs (writing to ``out_path``)."""
    cxx_cmd = shlex.split(cxx)
    runtime_dir = Path(runtime_dir).resolve()
    cmd = [*cxx_cmd, *BASE_FLAGS]
    cmd.append(f"-ffile-prefix-map={RUNNER_SOURCE_DIR}=ansor_runner")
    for i, inc in enumerate(tvm_ffi_include_dirs()):
        inc = inc.resolve()
        cmd.append(f"-ffile-prefix-map={inc}=tvm_ffi_include{i or ''}")
        cmd += ["-isystem", str(inc)]
    if sysroot:
        cmd.append(f"--sysroot={sysroot}")
    cmd += list(extra_flags)
    cmd += [str(RUNNER_MAIN), "-o", str(out_path)]
    cmd += ["-L", str(runtime_dir), f"-Wl,-rpath-link,{runtime_dir}", *LINK_FLAGS]
    return cmd


def build_runner(out_path: Path, *, cxx: str = "g++", runtime_dir: Path, extra_flags: Sequence[str] = (),
                 sysroot: str | None = None) -> None:
    """Compile ``ansor_runner`` into ``out_path`` (atomically: temp file + rename).

    Raises InputError for a missing compiler or runtime library, ToolError if the compiler fails
    (its output is kept in ``out_path.with_suffix('.log')``, named in the message).
    """
    out_path = Path(out_path)
    runtime_dir = Path(runtime_dir)
    try:
        cxx_cmd = shlex.split(cxx)
    except ValueError as err:
        raise InputError(f"invalid C++ compiler command {cxx!r}: {err}") from None
    if not cxx_cmd or shutil.which(cxx_cmd[0]) is None:
        raise InputError(f"C++ compiler {cxx!r} not found on PATH (needed to build the package runner; "
                         "install it or choose another compiler)")
    missing = [lib for lib in RUNTIME_LIBS if not (runtime_dir / lib).is_file()]
    if missing:
        raise InputError(f"cannot build the runner: {', '.join(missing)} missing in runtime directory {runtime_dir}")
    if not RUNNER_MAIN.is_file():
        raise InputError(f"runner source missing: {RUNNER_MAIN} (broken ansor-build installation)")

    out_path.parent.mkdir(parents=True, exist_ok=True)
    log_path = out_path.with_suffix(".log")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    cmd = runner_command(tmp, cxx=cxx, runtime_dir=runtime_dir, extra_flags=extra_flags, sysroot=sysroot)
    env = dict(os.environ)
    env["LC_ALL"] = "C"  # stable, ASCII diagnostics
    try:
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                  cwd=str(RUNNER_SOURCE_DIR), check=False)
        except OSError as err:
            raise InputError(f"cannot run C++ compiler {cxx!r}: {err}") from None
        log = proc.stdout.decode("utf-8", errors="replace")
        if proc.returncode != 0:
            log_path.write_text(shlex.join(cmd) + "\n\n" + log)
            raise ToolError("compiling the package runner", cmd, proc.returncode, str(log_path),
                            detail=_first_error_line(log))
        tmp.chmod(0o755)
        os.replace(tmp, out_path)
    finally:
        if tmp.exists():
            tmp.unlink()
    if log_path.exists():
        log_path.unlink()  # stale log of an earlier failure

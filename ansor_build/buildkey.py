"""The build key: every input SCons hashes into a package's signature (and so its CacheDir key), defined once.

The SCons tool declares exactly these as dependencies; `ansor-build explain` prints them with their hashes.
Nothing here imports TVM (the tool calls it while SCons reads the SConstruct).

A package (the compile step) depends on: the model file and its external data; the target YAML and every file it
extends; the C++ sources of the runner and of model.so's runtime (`source_files`); the tool versions
(`versions_text`); the build host's tools (`host_tools_text`: C++ compiler, and nvcc for GPU targets, which write
bytes into the package); and, when tuning, the content of PACKAGE.records.json. The tuning step that writes that
file depends on the model, the target files, the versions, the mode (and budgets, unless the mode is reuse) with the
effective TVM target (`tuning_text`), and the record files of the model's tasks (`tuning.tasklist.model_task_files`).
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from .tuning.store import dumps
from .version import __version__

# Bump when the set of inputs changes meaning: every key changes, nothing is migrated.
KEY_SCHEMA = 1


@functools.cache
def tool_versions() -> dict[str, str]:
    """ansor-build, apache-tvm and apache-tvm-ffi versions (package metadata; TVM is not imported)."""
    from .backend import versions

    return {"ansor-build": __version__, **versions()}


def versions_text() -> str:
    """`ansor-build=X apache-tvm=Y apache-tvm-ffi=Z` (the SCons tool's default ANSOR_VERSIONS)."""
    return " ".join(f"{name}={version}" for name, version in sorted(tool_versions().items()))


def target_files(target) -> list[Path]:
    """The target YAML first, then every file it extends (presets included)."""
    return list(target.files)


def source_files() -> list[Path]:
    """The C++ sources compiled into every package, with the scripts that build them: the runner's (bin/ and src/)
    and the CPU runtime linked into model.so (thread pool, workspace allocator)."""
    from .backend import package_runtime
    from .runner import runner_sources

    return [*runner_sources(), *package_runtime.SOURCES, Path(package_runtime.__file__)]


@functools.cache
def _tool_identity(command: str, flags: tuple[str, ...], path_env: str, last_line: bool = False) -> str:
    """The output lines of `command FLAG` that name the tool's version (memoized: asked once per SCons run)."""
    argv = shlex.split(command)
    if not argv or shutil.which(argv[0], path=path_env) is None:
        return f"{command} (not found)"
    lines = []
    for flag in flags:
        try:
            proc = subprocess.run([*argv, flag], capture_output=True, text=True, check=False,
                                  env={**os.environ, "LC_ALL": "C", "PATH": path_env})
        except OSError as err:
            return f"{command} (cannot run: {err.strerror})"
        output = (proc.stdout or proc.stderr).strip().splitlines() or [""]
        lines.append(output[-1] if last_line else output[0])
    return " | ".join(lines)


def host_tools_text(target) -> str:
    """The key schema and the identity of the build host's tools that write bytes into a package: the C++ compiler
    (links model.so, builds the runner) and, for GPU targets, nvcc (compiles the device code)."""
    path_env = os.environ.get("PATH", "")
    parts = [f"key-schema={KEY_SCHEMA}", f"cxx={_tool_identity(target.cxx, ('--version', '-dumpmachine'), path_env)}"]
    if target.device == "cuda":  # gcc names its version on the first line, nvcc on the last
        parts.append(f"nvcc={_tool_identity(target.nvcc, ('--version',), path_env, last_line=True)}")
    return "; ".join(parts)


def tuning_text(target, mode: str, budget_flags: str) -> str:
    """The tuning step's settings: mode, budgets (not in reuse mode: they change nothing there) and the effective
    TVM target (on CPU targets without num-cores it is this machine's core count)."""
    budgets = "" if mode == "reuse" else f" {budget_flags}".rstrip()
    return f"tuning {mode}{budgets} target {dumps(target.tuned_tvm())}"

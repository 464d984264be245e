"""Reusing built runners: the runner's bytes depend only on the inputs of its key, not on the model.

Key (sha256 of, in order): the runner sources and build script, the compiler's `--version` and `-dumpmachine`
output, the extra flags, and the sha256 of each runtime library it links against. Entries live in
`<cache_dir>/runner/<key>/ansor_runner` next to `key.txt`, a readable list of those inputs.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from ..cache import cache_dir
from .build import RUNTIME_LIBS, build_runner, runner_sources


def _compiler_identity(cxx: str) -> str:
    command = shlex.split(cxx)
    parts = []
    for flag in ("--version", "-dumpmachine"):
        proc = subprocess.run([*command, flag], capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
        parts.append(proc.stdout.strip())
    return "\n".join(parts)


def runner_key_inputs(cxx: str, runtime_dir: Path, extra_flags) -> list[tuple[str, str]]:
    """(name, value or sha256) pairs that decide the runner binary's bytes."""
    items = [(f"source {path.name}", hashlib.sha256(path.read_bytes()).hexdigest()) for path in runner_sources()]
    items.append(("compiler", _compiler_identity(cxx)))
    items.append(("flags", shlex.join(extra_flags)))
    for lib in RUNTIME_LIBS:
        items.append((f"runtime {lib}", hashlib.sha256((Path(runtime_dir) / lib).read_bytes()).hexdigest()))
    return items


def cached_runner(out_path: Path, *, cxx: str, runtime_dir: Path, extra_flags=()) -> bool:
    """Put the runner at `out_path`, from the cache when possible; True on a cache hit."""
    inputs = runner_key_inputs(cxx, runtime_dir, list(extra_flags))
    text = "".join(f"{name}: {value}\n" for name, value in inputs)
    key = hashlib.sha256(text.encode()).hexdigest()[:32]
    entry = cache_dir() / "runner" / key
    cached = entry / "ansor_runner"
    if cached.is_file():
        shutil.copy2(cached, out_path)
        return True
    build_runner(out_path, cxx=cxx, runtime_dir=runtime_dir, extra_flags=list(extra_flags))
    try:
        entry.mkdir(parents=True, exist_ok=True)
        tmp = entry / f".ansor_runner.{os.getpid()}"
        shutil.copy2(out_path, tmp)
        os.replace(tmp, cached)
        (entry / "key.txt").write_text(text, encoding="utf-8")
    except OSError:
        pass  # an unwritable cache only costs time
    return False

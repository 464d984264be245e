"""Helpers shared by the test tiers (importable as `helpers`: pytest's pythonpath includes tests/)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PRESETS = REPO / "targets"
HOST_TARGET = PRESETS / "x86_64-avx2.yaml"


def run_cli(*args, cwd=None, env=None, check=False) -> subprocess.CompletedProcess:
    """Run `python -m ansor_build ARGS` in a fresh process."""
    proc = subprocess.run([sys.executable, "-m", "ansor_build", *map(str, args)], cwd=cwd,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"ansor-build {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """Assert the process failed with exactly one 'ansor-build: error:' line and no traceback; return it."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ansor-build: error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def run_scons(root, *args, check=True) -> subprocess.CompletedProcess:
    """Run `scons -Q ARGS` in the project at `root`, with its own ansor-build cache (runner binaries)."""
    proc = subprocess.run([sys.executable, "-m", "SCons", "-Q", *args], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "ANSOR_BUILD_CACHE_DIR": str(Path(root) / ".cache")})
    if check and proc.returncode != 0:
        raise AssertionError(f"scons {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc

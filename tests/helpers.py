"""Helpers shared by the test tiers (importable as `helpers`: pytest's pythonpath includes tests/)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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


def assert_group_ends(pgid: int, seconds: float, kill: bool = False) -> None:
    """Wait until no process of group `pgid` is left (the workers of a run end with it); else fail (and with `kill`,
    end them first so they do not outlive the test)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    if kill:
        os.killpg(pgid, signal.SIGKILL)
    raise AssertionError("tuning left worker processes behind")

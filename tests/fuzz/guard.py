"""What every fuzz case asserts: a clean ending, and nothing touched outside the output directory."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from ansor_build.errors import AnsorError

# Exit codes a command may end with: 0 (the damaged input still worked) or 1 (one error line).
ALLOWED = (0, 1)


def snapshot(root: Path, skip: str = "out") -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every path under `root` except the output directory and its siblings (`out*`)."""
    found = {}
    for path in sorted(Path(root).rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0].startswith(skip):
            continue
        stat = path.lstat()
        found[str(rel)] = (stat.st_size if path.is_file() else -1, stat.st_mtime_ns)
    return found


def assert_clean_exit(proc: subprocess.CompletedProcess, case: str) -> None:
    """Exit 0, or exit 1 with exactly one `ansor-build: error:` line; never a traceback or a signal."""
    where = f"{case}\nexit {proc.returncode}\nstderr:\n{proc.stderr[-4000:]}"
    if proc.returncode < 0 or proc.returncode > 128:
        sig = -proc.returncode if proc.returncode < 0 else proc.returncode - 128
        raise AssertionError(f"died of signal {signal.Signals(sig).name}: {where}")
    assert proc.returncode in ALLOWED, where
    assert "Traceback" not in proc.stderr, where
    if proc.returncode == 1:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("ansor-build: error:")]
        assert len(errors) == 1, where


def call_clean(fn, *args, **kwargs):
    """Call `fn`; return its result or the AnsorError it raised (any other exception fails the case)."""
    try:
        return fn(*args, **kwargs)
    except AnsorError as err:
        message = str(err)
        assert message and "\n" not in message.strip(), f"not one line: {message!r}"
        return err

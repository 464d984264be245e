"""Atomic package writes: build into a hidden sibling directory, then swap it into place."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from ..errors import InputError


@contextlib.contextmanager
def staged_directory(out: Path):
    """Yield an empty staging directory that replaces `out` only if the block finishes without error.

    A failed or interrupted build removes the staging directory and leaves `out` as it was.
    """
    out = Path(out)
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{out}: cannot create output directory: {err.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise InputError(f"{out}: output directory '{parent}' is not writable")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")
    stage = parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
        old = parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            os.replace(out, old)
        os.replace(stage, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def no_empty_directory_on_failure(out: Path):
    """SCons creates a target's directory before building it: a failed build must not leave it behind empty."""
    try:
        yield
    except BaseException:
        if out.is_dir() and not any(path.is_file() or path.is_symlink() for path in out.rglob("*")):
            shutil.rmtree(out, ignore_errors=True)  # only empty directories (SCons makes bin/, runtime/ too)
        raise


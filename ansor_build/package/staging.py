"""Atomic package writes: build into a hidden sibling directory, then swap it into place.

An output directory is replaced only when it is empty or a package ansor-build wrote (a manifest of ours listing
every file in it): anything else is refused with one line, so `-o ~` or `-o src/` can never lose a user's files.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

from .. import interrupt
from ..errors import InputError
from .layout import MANIFEST

# Files a package may hold besides those its manifest lists: Python's bytecode of loader.py, written when a
# program imports the package's loader from the package directory itself.
_BYTECODE = re.compile(r"(?:.+/)?__pycache__/[^/]+\.pyc")
_MAX_MANIFEST_BYTES = 16 << 20


def _display(out: Path) -> str:
    return str(out) if str(out) not in ("", ".") else f"{out} ({Path.cwd()})"


def _own_manifest(out: Path) -> dict | None:
    """The manifest of a package ansor-build wrote in `out`, or None when `out` holds none."""
    path = out / MANIFEST
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _MAX_MANIFEST_BYTES:
            return None
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return None
    if not isinstance(manifest.get("versions"), dict) or "ansor-build" not in manifest["versions"]:
        return None
    return manifest


def foreign_files(out: Path, manifest: dict) -> list[str]:
    """Paths under `out` (relative, sorted) that the package's manifest does not account for.

    A directory is accounted for when a listed file lies in it; links are never followed.
    """
    listed = {MANIFEST, *manifest["files"]}
    parents = {str(Path(name).parent) for name in listed}
    parents |= {str(p) for name in parents for p in Path(name).parents}
    found = []
    for root, dirs, files in os.walk(out):
        rel_root = os.path.relpath(root, out)
        for name in files + dirs:
            rel = name if rel_root == "." else f"{rel_root}/{name}"
            is_dir = name in dirs and not os.path.islink(os.path.join(root, name))
            if _BYTECODE.fullmatch(rel) or (is_dir and rel.endswith("__pycache__")):
                continue
            if (rel in parents and is_dir) or (rel in listed and not is_dir):
                continue
            found.append(rel)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
    return sorted(found)


def check_replaceable(out: Path) -> None:
    """Raise InputError unless `out` may be written as a package: absent, empty (no files, directories only), or
    a package of ours whose manifest lists every file in it.

    Called before a build starts (so a refused directory costs no compile) and again just before the swap.
    """
    out = Path(out)
    where = _display(out)
    absolute = Path(os.path.abspath(out))
    if absolute.parent == absolute:
        raise InputError(f"{where}: the filesystem root cannot be an output directory; choose a new directory")
    if out.is_symlink():
        raise InputError(f"{where}: is a symbolic link (to {os.readlink(out)}); ansor-build replaces the package "
                         f"directory itself: give the directory the link points to, or a new path, as the output")
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError(f"{where}: exists and is not a directory; choose a new directory for the package")
    try:
        if _empty_tree(out):  # SCons makes a package's directories (bin/, runtime/, src/) before building it
            return
    except OSError as err:
        raise InputError(f"{where}: cannot read output directory: {err.strerror}") from None
    manifest = _own_manifest(out)
    if manifest is None:
        raise InputError(f"{where}: exists and is not a package ansor-build wrote (no manifest.json of ours); "
                         f"refusing to replace it: choose a new or empty directory for the package")
    foreign = foreign_files(out, manifest)
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise InputError(f"{where}: holds files ansor-build did not write ({foreign[0]}{more}); refusing to replace "
                         f"the package: move them out, or choose another output directory")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


STALE_SECONDS = 3600  # a stage untouched this long, of a process that is gone, was left by a killed build


def _remove_stale_stages(parent: Path, name: str) -> None:
    """Staging directories of builds that were killed (SIGKILL, power loss) before they could clean up.

    Only stages of this output whose process is gone and that have not changed for STALE_SECONDS: a build on
    another machine sharing the directory (whose pid means nothing here) is still writing to its stage.
    """
    pattern = re.compile(rf"\.{re.escape(name)}\.(?:tmp|old)-(\d+)-[A-Za-z0-9_]+")
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))) \
                and entry.is_dir() and not entry.is_symlink() and _age(entry) > STALE_SECONDS:
            shutil.rmtree(entry, ignore_errors=True)


def _age(path: Path) -> float:
    try:
        return time.time() - path.lstat().st_mtime
    except OSError:
        return 0.0


@contextlib.contextmanager
def staged_directory(out: Path):
    """Yield an empty staging directory that replaces `out` only if the block finishes without error.

    A failed or interrupted build removes the staging directory and leaves `out` as it was. `out` must pass
    `check_replaceable` (checked before the block and again before the swap).
    """
    out = Path(os.path.abspath(out))
    check_replaceable(out)
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{out}: cannot create output directory: {err.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise InputError(f"{out}: output directory '{parent}' is not writable")
    _remove_stale_stages(parent, out.name)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=parent))
    try:
        yield stage
        check_replaceable(out)  # the directory may have changed while the package was built
        old = None
        with _signals_deferred():  # Ctrl-C between the two renames would lose both packages
            interrupt.check_stop()  # a stop requested while building, whose exception Python may have dropped
            if out.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-{os.getpid()}-", dir=parent))
                os.replace(out, old)  # an empty directory as the destination is replaced atomically
            os.replace(stage, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def _signals_deferred():
    """Hold SIGINT and SIGTERM where an interruption would leave a half-done swap; a signal that arrives meanwhile
    is delivered again, to the handler that was in place, when the block ends.

    Python-level handlers, not a signal mask: a mask covers only the calling thread, and a process-directed signal
    is then taken by another thread (BLAS or TVM workers) and its Python handler still runs in the block.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives Python signal handlers
        return
    pending: list[int] = []
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if handler is not None:  # None: installed outside Python, not ours to swap
            previous[sig] = handler
            signal.signal(sig, lambda signum, _frame: pending.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in pending:
            os.kill(os.getpid(), sig)


@contextlib.contextmanager
def no_empty_directory_on_failure(out: Path):
    """SCons creates a target's directory before building it: a failed build must not leave it behind empty.

    Only a directory tree that was empty (no files) before the build and still is gets removed.
    """
    out = Path(out)
    was_empty = out.is_dir() and not out.is_symlink() and _empty_tree(out)
    try:
        yield
    except BaseException:
        if was_empty and out.is_dir() and _empty_tree(out):
            shutil.rmtree(out, ignore_errors=True)  # only empty directories (SCons makes bin/, runtime/ too)
        raise


def _empty_tree(out: Path) -> bool:
    """No files or links anywhere below `out` (directories only); links are not followed."""
    for root, dirs, files in os.walk(out, onerror=_raise):
        if files or any(os.path.islink(os.path.join(root, d)) for d in dirs):
            return False
    return True


def _raise(err: OSError) -> None:
    raise err

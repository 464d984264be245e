"""Checking a package, as a directory or as PACKAGE.tar.gz, against the sha256 and size its manifest lists.

It proves integrity (nothing modified, added or lost since the build), not authenticity: whoever can rewrite
manifest.json can rewrite the hashes too. Publish or sign the archive's own sha256 for that.

The input may be hostile (a release pipeline runs `verify` on an upload), so it is read as a stream, in bounded memory:
a file is hashed a chunk at a time, and only if its size is the one the manifest lists (any other size is `modified`
unread; in an archive, members before manifest.json are hashed up to their own size); a file the manifest does not
list is never read; symlinks are never followed (a symlink is `modified` or `extra`, never a way out of the package);
and an archive is read within `tarstream.LIMITS` (entries, name length, total size, expansion ratio).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, Optional

from ..errors import InputError
from . import tarstream
from .layout import FORMAT_VERSION, MANIFEST
from .tarstream import CHUNK, LIMITS, Limits, shown, size_text

SHOWN = 20  # names listed per kind of difference; the rest are counted

# A file found in the package: (size, sha256), sha256 None when not hashed (its size already differs from the
# manifest's, or the manifest does not list it); None when it is not a regular file.
Found = Optional[tuple[int, Optional[str]]]


@dataclass
class Verification:
    """What differs between a package and its manifest."""

    package: Path
    checked: int = 0
    modified: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.modified or self.missing or self.extra)

    def line(self) -> str:
        """`PKG: ok, 9 files match manifest.json`, or every difference on one line."""
        if self.ok:
            return f"{self.package}: ok, {self.checked} files match {MANIFEST}"
        parts = [f"{what}: {_names(names)}" for what, names in
                 (("modified", self.modified), ("missing", self.missing), ("extra", self.extra)) if names]
        return f"{self.package}: does not match {MANIFEST}: {'; '.join(parts)}"


def _names(names: list[str]) -> str:
    more = f" (and {len(names) - SHOWN} more)" if len(names) > SHOWN else ""
    return ", ".join(shown(name) for name in names[:SHOWN]) + more


def safe_name(name: str, limit: int = LIMITS.name) -> bool:
    """A relative path inside the package: not absolute, no `..`, backslash or unprintable character, not too long."""
    path = PurePosixPath(name)
    return (bool(name) and len(name) <= limit and name.isprintable() and not path.is_absolute()
            and ".." not in path.parts and "\\" not in name)


def _listed_name(name: str) -> bool:
    """A name a manifest may list: safe, and spelled as a path is normalized (`a/b`, not `./a//b/`)."""
    return safe_name(name) and name != MANIFEST and PurePosixPath(name).as_posix() == name != "."


def _entry(value) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("sha256"), str)
            and re.fullmatch("[0-9a-f]{64}", value["sha256"]) is not None
            and type(value.get("size")) is int and value["size"] >= 0)


def parse_manifest(text: str | bytes, where: str, limits: Limits = LIMITS) -> dict[str, dict]:
    """The `files` of a manifest (name -> {sha256, size}), validated; `where` names it in errors."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InputError(f"{where}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{where}: invalid JSON at line {err.lineno}: {err.msg}") from None
    except (ValueError, RecursionError) as err:  # a number of too many digits, nesting too deep
        raise InputError(f"{where}: invalid JSON: {str(err).splitlines()[0]}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise InputError(f"{where}: format {found!r:.40} is not supported (expected {FORMAT_VERSION})")
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(_entry(v) for v in files.values()):
        raise InputError(f"{where}: files: expected a mapping of file name to {{sha256, size}}")
    if len(files) > limits.entries:
        raise InputError(f"{where}: files: refused: lists {len(files)} files (at most {limits.entries})")
    unsafe = sorted(name for name in files if not _listed_name(name))
    if unsafe:
        raise InputError(f"{where}: files: '{shown(unsafe[0])[:200]}' is not a file name inside the package")
    return files


def compare(package: Path, listed: dict[str, dict], found: dict[str, Found]) -> Verification:
    """`found`: relative name -> (size, sha256 or None when not hashed), or None when not a regular file."""
    result = Verification(package, checked=len(listed))
    for name, expected in sorted(listed.items()):
        got = found.get(name, ...)
        if got is ...:
            result.missing.append(name)
        elif got is None or got != (expected["size"], expected["sha256"]):
            result.modified.append(name)
    result.extra = sorted(name for name in found if name not in listed)
    return result


def sha256_of(read: Callable[[int], bytes], limit: int) -> tuple[int, str]:
    """(bytes read, sha256 of them) of at most `limit` bytes from `read(n)`, a chunk at a time."""
    digest, size = hashlib.sha256(), 0
    while size < limit:
        data = read(min(CHUNK, limit - size))
        if not data:
            break
        digest.update(data)
        size += len(data)
    return size, digest.hexdigest()


def _hashed(read: Callable[[int], bytes], size: int, expected: dict | None) -> tuple[int, str | None]:
    """(size, sha256): hashed only when `size` is the expected one, and never past one byte more (a file that grew)."""
    if expected is None or size != expected["size"]:
        return size, None
    return sha256_of(read, size + 1)


# --- package directories: read through descriptors, never following a symlink ---------------------------------

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO swapped in does not hang


def open_package(package: Path) -> int:
    """A descriptor of the package directory (the path itself may be a symlink: it is what the user named)."""
    try:
        return os.open(package, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise InputError(f"{package}: cannot open the package directory: {err.strerror}") from None


def _open_dir(root: int, parts: list[str]) -> int:
    """A new descriptor of directory `parts` below `root`, no component a symlink; OSError otherwise."""
    fd = os.dup(root)
    try:
        for part in parts:
            below = os.open(part, _DIR, dir_fd=fd)
            os.close(fd)
            fd = below
    except OSError:
        os.close(fd)
        raise
    return fd


def open_inside(root: int, name: str, where: str) -> int:
    """A descriptor of regular file `name` (a safe relative name) below directory descriptor `root`; no component may
    be a symlink, so nothing outside the package is ever opened. `where` names the file in errors."""
    parts = name.split("/")
    try:
        directory = _open_dir(root, parts[:-1])
        try:
            fd = os.open(parts[-1], _FILE, dir_fd=directory)
        finally:
            os.close(directory)
    except OSError as err:
        reason = "is a symlink or below one (refused)" if err.errno in (errno.ELOOP, errno.ENOTDIR) else \
            err.strerror
        raise InputError(f"{where}: {reason}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError(f"{where}: not a regular file")
    return fd


def read_manifest(root: int, package: Path, limits: Limits = LIMITS) -> bytes:
    """The bytes of manifest.json in the package open as `root`: a regular file, at most `limits.manifest` bytes."""
    try:
        os.stat(MANIFEST, dir_fd=root, follow_symlinks=False)
    except FileNotFoundError:
        raise InputError(f"{package}: not a package ({MANIFEST} not found)") from None
    except OSError:
        pass  # reported by open_inside
    where = package / MANIFEST
    with os.fdopen(open_inside(root, MANIFEST, str(where)), "rb") as file:  # buffered: reads until n bytes or EOF
        try:
            data = file.read(limits.manifest + 1)
        except OSError as err:
            raise InputError(f"{where}: cannot read: {err.strerror}") from None
    if len(data) > limits.manifest:
        raise InputError(f"{where}: refused: larger than {size_text(limits.manifest)}")
    return data


def _walk(root: int, package: Path, limits: Limits) -> Iterator[tuple[str, int, os.DirEntry | None]]:
    """(relative name, descriptor of its directory, entry) of everything below `root` but directories, without
    following symlinks; entry None for a directory that cannot be entered as one (swapped for a symlink since)."""
    count, pending = 0, [""]
    while pending:
        prefix = pending.pop()
        try:
            fd = _open_dir(root, prefix.split("/")[:-1])
        except OSError as err:
            if err.errno not in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                raise InputError(f"{package / prefix}: cannot list: {err.strerror}") from None
            yield prefix[:-1], root, None
            continue
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    count += 1
                    if count > limits.entries:
                        raise InputError(f"{package}: refused: more than {limits.entries} files and directories")
                    name = prefix + entry.name
                    if entry.is_dir(follow_symlinks=False) and len(name) < limits.name:
                        pending.append(name + "/")
                    else:
                        yield name, fd, entry
        except OSError as err:
            raise InputError(f"{package / prefix}: cannot list: {err.strerror}") from None
        finally:
            os.close(fd)


def _directory(package: Path, limits: Limits) -> Verification:
    root = open_package(package)
    try:
        listed = parse_manifest(read_manifest(root, package, limits), str(package / MANIFEST), limits)
        found: dict[str, Found] = {}
        for name, fd, entry in _walk(root, package, limits):
            if name == MANIFEST:
                continue
            if entry is None or not entry.is_file(follow_symlinks=False):
                found[name] = None
            elif name not in listed:
                found[name] = (0, None)  # extra: never read
            else:
                found[name] = _file(fd, entry.name, listed[name], package / name)
        return compare(package, listed, found)
    finally:
        os.close(root)


def _file(directory: int, name: str, expected: dict, where: Path) -> Found:
    try:
        fd = os.open(name, _FILE, dir_fd=directory)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOENT):
            return None  # swapped for a symlink or removed since it was listed
        raise InputError(f"{where}: cannot read: {err.strerror}") from None
    with os.fdopen(fd, "rb", buffering=0) as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        try:
            return _hashed(file.read, info.st_size, expected)
        except OSError as err:
            raise InputError(f"{where}: cannot read: {err.strerror}") from None


# --- archives --------------------------------------------------------------------------------------------------

def _archive(archive: Path, limits: Limits) -> Verification:
    try:
        raw = open(archive, "rb")
    except OSError as err:
        raise InputError(f"{archive}: cannot read: {err.strerror}") from None
    with raw:
        try:
            return _members(archive, raw, limits)
        except OSError as err:
            raise InputError(f"{archive}: cannot read: {err.strerror}") from None


def _members(archive: Path, raw, limits: Limits) -> Verification:
    top, listed, manifest_error = None, None, None
    found: dict[str, Found] = {}
    seen: set[str] = set()
    for member in tarstream.members(raw, str(archive), limits):
        parts = PurePosixPath(member.name).parts
        inside = f"'{top}/'" if top else "one top directory"
        if (not safe_name(member.name) or not parts or member.kind not in ("file", "dir")
                or (member.kind == "file" and len(parts) < 2)):
            raise InputError(f"{archive}: member '{shown(member.name)[:200]}' is not a plain file or directory "
                             f"inside {inside}")
        top = top or parts[0]
        if parts[0] != top:
            raise InputError(f"{archive}: expected one top directory, found 2: {', '.join(sorted((top, parts[0])))}")
        name = "/".join(parts[1:])
        if name in seen:
            raise InputError(f"{archive}: member '{shown(member.name)}' appears twice")
        seen.add(name)
        if member.kind == "dir":
            continue
        if name == MANIFEST:
            where = f"{archive}: {top}/{MANIFEST}"
            if member.size > limits.manifest:
                raise InputError(f"{where}: refused: larger than {size_text(limits.manifest)}")
            try:
                listed = parse_manifest(b"".join(iter(member.read, b"")), where, limits)
            except InputError as err:
                manifest_error = err  # raised once every member passed the checks above
            continue
        # before the manifest is read every file is hashed; after it, only those of the listed size
        expected = listed.get(name) if listed is not None else {"size": member.size}
        found[name] = _hashed(member.read, member.size, expected)
    if manifest_error:
        raise manifest_error
    if top is None:
        raise InputError(f"{archive}: expected one top directory, found 0: none")
    if listed is None:
        raise InputError(f"{archive}: not a package archive ({top}/{MANIFEST} not found)")
    return compare(archive, listed, found)


def verify(path: str | Path, limits: Limits = LIMITS) -> Verification:
    """Check a package directory or a `.tar.gz` package archive against its manifest."""
    path = Path(path)
    if path.is_dir():
        return _directory(path, limits)
    if not path.exists():
        raise InputError(f"{path}: not found (expected a package directory or a PACKAGE.tar.gz)")
    return _archive(path, limits)

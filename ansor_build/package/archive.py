"""PACKAGE.tar.gz: a package as one reproducible file for upload (same package, same bytes, on any machine).

Entries are sorted, with fixed metadata: mtime ARCHIVE_MTIME, uid/gid 0, no user or group names, mode 0755 for
directories and executables and 0644 for other files; the gzip header has no file name and mtime 0. Only what
manifest.json lists (and the manifest) goes in, under one top directory named like the package, and only after the
directory was verified against the manifest. (Byte identity assumes the same zlib: Python's gzip uses the system's.)

The directory may be hostile: it is read a file at a time (the archive is streamed to its file, never held in memory)
through descriptors that follow no symlink, so nothing outside the package is read, and each file is hashed again as
it is written: one changed since it was verified is refused rather than archived.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from ..errors import InputError
from .layout import MANIFEST
from .verify import open_inside, open_package, parse_manifest, read_manifest, verify

ARCHIVE_MTIME = 946684800  # 2000-01-01T00:00:00Z: fixed (GNU tar warns of "implausibly old" timestamps at 0)


def archive_path(package: Path) -> Path:
    """The default archive of a package directory: its sibling `<name>.tar.gz`."""
    package = Path(package)
    return package.parent / f"{package.name}.tar.gz"


def _info(name: str, directory: bool, executable: bool, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory or executable else 0o644
    info.size = size
    info.mtime = ARCHIVE_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class _Checked:
    """A package file as `tarfile.addfile` reads it: exactly `size` bytes, hashed on the way (it may change while it is
    archived: `check` then refuses the archive)."""

    def __init__(self, file, size: int, where: str):
        self.file, self.left, self.where = file, size, where
        self.digest = hashlib.sha256()

    def _read(self, n: int) -> bytes:
        try:
            return self.file.read(n)
        except OSError as err:
            raise InputError(f"cannot archive: {self.where}: {err.strerror}") from None

    def read(self, n: int) -> bytes:
        n = min(n, self.left)
        data = self._read(n)
        while len(data) < n:  # a regular file reads short only at its end
            more = self._read(n - len(data))
            if not more:
                raise InputError(f"cannot archive: {self.where} changed while it was archived (it is shorter)")
            data += more
        self.digest.update(data)
        self.left -= len(data)
        return data

    def check(self, sha256: str) -> None:
        if self._read(1) or self.digest.hexdigest() != sha256:
            raise InputError(f"cannot archive: {self.where} changed while it was archived")


def _write(package: Path, out: BinaryIO) -> None:
    """Write the archive of a package directory to `out`, a file at a time, reading through descriptors that follow
    no symlink (nothing outside the package is read); every file must still match the manifest. Reading fails with
    an InputError, writing with an OSError."""
    top = os.path.basename(os.path.abspath(package))
    root = open_package(package)
    try:
        manifest = read_manifest(root, package)
        manifest_executable = bool(os.stat(MANIFEST, dir_fd=root, follow_symlinks=False).st_mode & 0o111)
        listed = parse_manifest(manifest, str(package / MANIFEST))
        names = [MANIFEST, *listed]
        dirs = {str(parent) for name in names for parent in PurePosixPath(name).parents if str(parent) != "."}
        with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
            tar.addfile(_info(top, True, True))
            for name, directory in sorted([(d, True) for d in dirs] + [(n, False) for n in names]):
                if directory:
                    tar.addfile(_info(f"{top}/{name}", True, True))
                elif name == MANIFEST:  # the very bytes just parsed
                    tar.addfile(_info(f"{top}/{name}", False, manifest_executable, len(manifest)),
                                io.BytesIO(manifest))
                else:
                    _add(tar, root, top, name, listed[name], f"{package / name}")
    finally:
        os.close(root)


def _add(tar: tarfile.TarFile, root: int, top: str, name: str, expected: dict, where: str) -> None:
    with os.fdopen(open_inside(root, name, f"cannot archive: {where}"), "rb", buffering=0) as file:
        info = os.fstat(file.fileno())
        if info.st_size != expected["size"]:
            raise InputError(f"cannot archive: {where} changed since it was verified")
        data = _Checked(file, info.st_size, where)
        tar.addfile(_info(f"{top}/{name}", False, bool(info.st_mode & 0o111), info.st_size), data)
        data.check(expected["sha256"])


def _verified(package: Path) -> None:
    check = verify(package)
    if not check.ok:
        raise InputError(f"cannot archive: {check.line()}")


def archive_bytes(package: Path) -> bytes:
    """The archive of a verified package directory, in memory (`write_archive` streams it to its file)."""
    package = Path(package)
    _verified(package)
    out = io.BytesIO()
    _write(package, out)
    return out.getvalue()


def _first_member(path: Path) -> str | None:
    """The name of the first entry of a .tar.gz file, or None when it is not one (reads one compressed block)."""
    try:
        with open(path, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            header = gz.read(512)
    except (OSError, EOFError, gzip.BadGzipFile, ValueError):
        return None
    if len(header) < 512 or header[257:262] != b"ustar":
        return None
    return header[:100].split(b"\0", 1)[0].decode("utf-8", "replace")


def check_archive_out(out: Path, top: str) -> None:
    """InputError unless `out` is absent or an archive of a package named `top` (ours to replace): a build or
    `archive -o` never overwrites what ansor-build did not write."""
    out = Path(out)
    if out.is_symlink() or (out.exists() and not out.is_file()):
        raise InputError(f"{out}: exists and is not a package archive (a directory, link or device); choose another "
                         f"archive path")
    if out.exists():
        first = _first_member(out)
        if first is None or first.split("/", 1)[0] != top:
            raise InputError(f"{out}: exists and is not an archive of package '{top}'; refusing to overwrite it: "
                             f"choose another archive path")


def write_archive(package: Path, out: Path | None = None) -> Path:
    """Write the package's reproducible `.tar.gz` (default: beside it) atomically; returns its path.

    An existing `out` is replaced only when it is an archive of this package's name (see `check_archive_out`).
    """
    package = Path(package)
    out = Path(out) if out else archive_path(package)
    check_archive_out(out, os.path.basename(os.path.abspath(package)))
    _verified(package)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{out.name}.tmp-", dir=out.parent)
        tmp = Path(name)
    except OSError as err:
        raise InputError(f"{out}: cannot write archive: {err.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), 0o644)  # mkstemp creates 0600; an archive is for upload and download
            _write(package, file)
        os.replace(tmp, out)
    except OSError as err:
        raise InputError(f"{out}: cannot write archive: {err.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return out

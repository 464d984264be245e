"""PACKAGE.tar.gz: a package as one reproducible file for upload (same package, same bytes, on any machine).

Entries are sorted, with fixed metadata: mtime ARCHIVE_MTIME, uid/gid 0, no user or group names, mode 0755 for
directories and executables and 0644 for other files; the gzip header has no file name and mtime 0. Only what
manifest.json lists (and the manifest) goes in, under one top directory named like the package, and only after the
directory was verified against the manifest. (Byte identity assumes the same zlib: Python's gzip uses the system's.)
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path, PurePosixPath

from ..errors import InputError
from .layout import MANIFEST
from .verify import parse_manifest, verify

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


def archive_bytes(package: Path) -> bytes:
    """The archive of a verified package directory, in memory."""
    package = Path(package)
    check = verify(package)
    if not check.ok:
        raise InputError(f"cannot archive: {check.line()}")
    top = os.path.basename(os.path.abspath(package))
    manifest = package / MANIFEST
    names = [MANIFEST, *parse_manifest(manifest.read_text(encoding="utf-8"), str(manifest))]
    dirs = {str(parent) for name in names for parent in PurePosixPath(name).parents if str(parent) != "."}
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.GNU_FORMAT) as tar:
        entries = sorted([(d, True) for d in dirs] + [(n, False) for n in names])
        tar.addfile(_info(top, True, True))
        for name, directory in entries:
            if directory:
                tar.addfile(_info(f"{top}/{name}", True, True))
                continue
            path = package / name
            data = path.read_bytes()
            executable = bool(path.stat().st_mode & 0o111)
            tar.addfile(_info(f"{top}/{name}", False, executable, len(data)), io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(tar_bytes.getvalue())
    return out.getvalue()


def write_archive(package: Path, out: Path | None = None) -> Path:
    """Write the package's reproducible `.tar.gz` (default: beside it) atomically; returns its path."""
    out = Path(out) if out else archive_path(package)
    data = archive_bytes(package)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, out)
    except OSError as err:
        raise InputError(f"{out}: cannot write archive: {err.strerror}") from None
    return out

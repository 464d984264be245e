"""Checking a package, as a directory or as PACKAGE.tar.gz, against the sha256 and size its manifest lists.

It proves integrity (nothing modified, added or lost since the build), not authenticity: whoever can rewrite
manifest.json can rewrite the hashes too. Publish or sign the archive's own sha256 for that.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import InputError
from .layout import FORMAT_VERSION, MANIFEST


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
        parts = [f"{what}: {', '.join(names)}" for what, names in
                 (("modified", self.modified), ("missing", self.missing), ("extra", self.extra)) if names]
        return f"{self.package}: does not match {MANIFEST}: {'; '.join(parts)}"


def safe_name(name: str) -> bool:
    """A relative path inside the package (no absolute path, no `..`)."""
    path = PurePosixPath(name)
    return bool(name) and not path.is_absolute() and ".." not in path.parts and "\\" not in name


def parse_manifest(text: str, where: str) -> dict[str, dict]:
    """The `files` of a manifest (name -> {sha256, size}), validated; `where` names it in errors."""
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{where}: invalid JSON at line {err.lineno}: {err.msg}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise InputError(f"{where}: format {found!r} is not supported (expected {FORMAT_VERSION})")
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("sha256"), str) and isinstance(v.get("size"), int)
            for v in files.values()):
        raise InputError(f"{where}: files: expected a mapping of file name to {{sha256, size}}")
    unsafe = sorted(name for name in files if not safe_name(name) or name == MANIFEST)
    if unsafe:
        raise InputError(f"{where}: files: '{unsafe[0]}' is not a file name inside the package")
    return files


def compare(package: Path, listed: dict[str, dict], found: dict[str, bytes | None]) -> Verification:
    """`found`: relative name -> bytes (None: present but not a regular file)."""
    result = Verification(package, checked=len(listed))
    for name, expected in sorted(listed.items()):
        data = found.get(name, ...)
        if data is ...:
            result.missing.append(name)
        elif data is None or len(data) != expected["size"] or hashlib.sha256(data).hexdigest() != expected["sha256"]:
            result.modified.append(name)
    result.extra = sorted(name for name in found if name not in listed)
    return result


def _directory(package: Path) -> Verification:
    manifest = package / MANIFEST
    if not manifest.is_file():
        raise InputError(f"{package}: not a package ({MANIFEST} not found)")
    listed = parse_manifest(manifest.read_text(encoding="utf-8"), str(manifest))
    found: dict[str, bytes | None] = {}
    for path in sorted(package.rglob("*")):
        name = path.relative_to(package).as_posix()
        if name == MANIFEST or (path.is_dir() and not path.is_symlink()):
            continue
        found[name] = path.read_bytes() if path.is_file() and not path.is_symlink() else None
    return compare(package, listed, found)


def read_archive(archive: Path) -> tuple[str, dict[str, bytes]]:
    """The top directory and the files (relative name -> bytes) of a package archive; one-line errors for anything
    that is not a plain archive of one directory (links, devices, absolute or `..` paths)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            tops = {PurePosixPath(m.name).parts[0] for m in members if m.name}
            if len(tops) != 1:
                raise InputError(f"{archive}: expected one top directory, found {len(tops)}: "
                                 f"{', '.join(sorted(tops)) or 'none'}")
            top = tops.pop()
            files = {}
            for member in members:
                if not safe_name(member.name) or not (member.isfile() or member.isdir()):
                    raise InputError(f"{archive}: member '{member.name}' is not a plain file or directory inside "
                                     f"'{top}/'")
                if member.isfile():
                    files[PurePosixPath(member.name).relative_to(top).as_posix()] = tar.extractfile(member).read()
    except FileNotFoundError:
        raise InputError(f"{archive}: file not found") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise InputError(f"{archive}: not a readable .tar.gz package archive ({err})") from None
    return top, files


def _archive(archive: Path) -> Verification:
    top, files = read_archive(archive)
    if MANIFEST not in files:
        raise InputError(f"{archive}: not a package archive ({top}/{MANIFEST} not found)")
    listed = parse_manifest(files.pop(MANIFEST).decode("utf-8", "replace"), f"{archive}: {top}/{MANIFEST}")
    return compare(archive, listed, files)


def verify(path: str | Path) -> Verification:
    """Check a package directory or a `.tar.gz` package archive against its manifest."""
    path = Path(path)
    if path.is_dir():
        return _directory(path)
    if not path.exists():
        raise InputError(f"{path}: not found (expected a package directory or a PACKAGE.tar.gz)")
    return _archive(path)

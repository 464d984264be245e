"""manifest.json: what a package holds and needs, with a sha256 of every file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import InputError
from ..jsonfile import load_json
from .layout import FORMAT_VERSION, MANIFEST


def file_entry(path: Path) -> dict:
    data = path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def dumps(manifest: dict) -> str:
    """Canonical text: sorted keys, two-space indent, trailing newline (byte-identical for equal content)."""
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def write_manifest(package: Path, manifest: dict, files: list[str]) -> dict:
    """Fill in `format` and the hashes of `files` (relative paths) and write manifest.json."""
    manifest = dict(manifest, format=FORMAT_VERSION)
    manifest["files"] = {name: file_entry(package / name) for name in sorted(files) if name != MANIFEST}
    (package / MANIFEST).write_text(dumps(manifest), encoding="utf-8")
    return manifest


def read_manifest(package: Path) -> dict:
    path = Path(package) / MANIFEST
    if not path.is_file():
        raise InputError(f"{package}: not a package ({MANIFEST} not found)")
    manifest = load_json(path, f"{MANIFEST} not found")
    if manifest.get("format") != FORMAT_VERSION:
        raise InputError(f"{path}: format {manifest.get('format')!r} is not supported (expected {FORMAT_VERSION})")
    return manifest

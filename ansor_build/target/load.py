"""Reading target YAML files: `extends` chains, deep merge, validation."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml

from ..errors import InputError
from ..paths import presets_dir
from .schema import validate


def read_yaml(path: Path) -> dict:
    """Parse and validate one target file (without following `extends`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: target file not found") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read target file: {err.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise InputError(f"{path}: {where}invalid YAML: {problem}") from None
    if data is None:
        data = {}
    validate(data, str(path))
    return data


def resolve_extends(name: str, referrer: Path) -> Path:
    """A preset name (`x86_64-avx2`) or a path relative to the file that extends it."""
    if "/" not in name and not name.endswith((".yaml", ".yml")):
        preset = presets_dir() / f"{name}.yaml"
        if preset.is_file():
            return preset
        names = sorted(p.stem for p in presets_dir().glob("*.yaml"))
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise InputError(f"{referrer}: extends: no preset named '{name}'{hint} (presets: {', '.join(names)})")
    path = (referrer.parent / name)
    if not path.is_file():
        raise InputError(f"{referrer}: extends: file '{name}' not found (looked at {path})")
    return path


def merge(base: dict, over: dict) -> dict:
    """Deep-merge mappings; lists and scalars of `over` replace those of `base`."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_chain(path: Path) -> tuple[dict, list[Path]]:
    """Merged spec of `path` and everything it extends, and the files read (most derived first)."""
    files: list[Path] = []
    layers: list[dict] = []
    current = path
    while True:
        resolved = current.resolve()
        if resolved in (f.resolve() for f in files):
            chain = " -> ".join(str(f) for f in files + [current])
            raise InputError(f"{path}: extends: cycle: {chain}")
        data = read_yaml(current)
        files.append(current)
        layers.append(data)
        parent = data.get("extends")
        if parent is None:
            break
        current = resolve_extends(parent, current)
    spec: dict[str, Any] = {}
    for layer in reversed(layers):
        spec = merge(spec, layer)
    spec.pop("extends", None)
    return spec, files

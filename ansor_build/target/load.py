"""Reading target YAML files: `extends` chains, deep merge, validation.

Target files are hostile input (a build may be asked to use anyone's): reading is bounded (`safeyaml`), and a file
reached through `extends` that is not a target file (`extends: /etc/passwd`) is reported without quoting it.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Iterator

import yaml

from ..errors import InputError
from ..paths import presets_dir
from .safeyaml import LimitError, NotText, parse, read_text
from .schema import validate
from .show import kind_name, shown, text_of

MAX_EXTENDS = 16  # files in one `extends` chain


def _where(path: Path) -> str:
    return text_of(str(path), 300)


def read_yaml(path: Path, via: tuple[Path, str] | None = None) -> dict:
    """Parse and validate one target file (without following `extends`).

    `via` is (the file that extends this one, the name its `extends` gives) for a file reached through `extends`:
    when that file is not a target file at all (not there, not text, not YAML, not a mapping) the error names the
    `extends` line of the referrer and quotes nothing of the file.
    """

    def not_a_target_file(what: str) -> InputError:
        referrer, name = via
        return InputError(f"{_where(referrer)}: extends: {shown(name, 80)} is not a target file ({what})")

    try:
        text = read_text(path)
    except FileNotFoundError:
        if via:
            raise InputError(f"{_where(via[0])}: extends: file {shown(via[1], 80)} not found (looked at "
                             f"{_where(path)})") from None
        raise InputError(f"{_where(path)}: target file not found") from None
    except LimitError as err:
        raise InputError(f"{_where(path)}: {err}") from None
    except NotText as err:
        raise (not_a_target_file("not UTF-8 text") if via else InputError(f"{_where(path)}: {err}")) from None
    except OSError as err:
        what = err.strerror or type(err).__name__
        raise (not_a_target_file(f"cannot read it: {what}") if via else
               InputError(f"{_where(path)}: cannot read target file: {what}")) from None
    try:
        data = parse(text)
    except LimitError as err:
        raise InputError(f"{_where(path)}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        if via:
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise not_a_target_file(f"invalid YAML{where}") from None
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise InputError(f"{_where(path)}: {where}invalid YAML: {text_of(problem, 120)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        if via:
            raise not_a_target_file(f"its top level is a {kind_name(data)}, expected a mapping")
        raise InputError(f"{_where(path)}: top level: expected a mapping of keys, found {kind_name(data)} "
                         f"(is this a target file?)")
    validate(data, _where(path))
    return data


def resolve_extends(name: str, referrer: Path) -> Path:
    """A preset name (`x86_64-avx2`) or a path relative to the file that extends it (or absolute).

    Whether the path names a target file is for `read_yaml` to say.
    """
    if "/" not in name and not name.endswith((".yaml", ".yml")):
        preset = presets_dir() / f"{name}.yaml"
        if os.path.isfile(preset):  # False, not an error, for names no file can have (a NUL, too long)
            return preset
        names = sorted(p.stem for p in presets_dir().glob("*.yaml"))
        close = difflib.get_close_matches(name, names, n=1) if len(name) <= 100 else []
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise InputError(f"{_where(referrer)}: extends: no preset named {shown(name, 80)}{hint} "
                         f"(presets: {', '.join(names)})")
    return referrer.parent / name


def merge(base: dict, over: dict) -> dict:
    """Deep-merge mappings; lists and scalars of `over` replace those of `base`."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL: reading it fails with its own error
        return path.absolute()


def load_layers(path: Path) -> list[tuple[Path, dict]]:
    """Every file of `path`'s `extends` chain with its validated contents, most derived first."""
    layers: list[tuple[Path, dict]] = []
    seen: list[Path] = []
    current, via = path, None
    while True:
        resolved = _resolved(current)
        if resolved in seen:
            chain = " -> ".join(_where(f) for f, _ in layers + [(current, None)])
            raise InputError(f"{_where(path)}: extends: cycle: {chain}")
        if len(layers) == MAX_EXTENDS:
            raise InputError(f"{_where(path)}: extends: a chain of more than {MAX_EXTENDS} files (the "
                             f"{MAX_EXTENDS}th is {_where(layers[-1][0])})")
        data = read_yaml(current, via)
        seen.append(resolved)
        layers.append((current, data))
        parent = data.get("extends")
        if parent is None:
            return layers
        via = (current, parent)
        current = resolve_extends(parent, current)


def merged(layers: list[tuple[Path, dict]]) -> dict:
    """The spec of a chain of `load_layers`: each file merged over the files it extends."""
    spec: dict[str, Any] = {}
    for _, data in reversed(layers):
        spec = merge(spec, data)
    spec.pop("extends", None)
    return spec


def load_chain(path: Path) -> tuple[dict, list[Path]]:
    """Merged spec of `path` and everything it extends, and the files read (most derived first)."""
    layers = load_layers(path)
    return merged(layers), [file for file, _ in layers]


def origins(layers: list[tuple[Path, dict]]) -> dict[str, Path]:
    """Key path (`tvm.host.mcpu`) -> the file whose value the merged spec has (the most derived that sets it)."""
    out: dict[str, Path] = {}
    for file, data in layers:
        for keypath in _leaves(data):
            out.setdefault(keypath, file)
    return out


def _leaves(data: dict, prefix: str = "") -> Iterator[str]:
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"

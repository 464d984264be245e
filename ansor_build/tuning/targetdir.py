"""Finding the per-target directories of a record store from command-line arguments (the `db` tools).

An argument is a target directory (it holds target.json), or a tuning directory holding target directories: then
the one of the given target, else its only one.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..jsonfile import load_json
from .store import FORMAT, dumps, target_dirname

TARGET_JSON = "target.json"


def is_target_dir(path: Path) -> bool:
    return (Path(path) / TARGET_JSON).is_file()


def read_target(directory: Path) -> dict:
    """The TVM target (dict form) of a target directory, from its target.json (one-line errors)."""
    path = Path(directory) / TARGET_JSON
    if not path.is_file():
        raise InputError(f"{directory}: not a tuning target directory ({TARGET_JSON} not found)")
    doc = load_json(path, f"{TARGET_JSON} not found")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("tvm"), dict):
        raise InputError(f"{path}: not a format-{FORMAT} target file (expected {{\"format\": {FORMAT}, \"tvm\": {{...}}}})")
    return doc["tvm"]


def target_dirs(root: Path) -> list[Path]:
    """The target directories directly under a tuning directory, sorted."""
    return sorted(p for p in Path(root).iterdir() if p.is_dir() and is_target_dir(p))


def resolve(arg: str | Path, tvm: dict | None = None) -> list[Path]:
    """Every target directory an argument names: itself, the one for `tvm` under it, or all under it."""
    path = Path(arg)
    if not path.is_dir():
        raise InputError(f"{path}: {'not a directory' if path.exists() else 'not found'} (expected a tuning "
                         f"directory or one of its target directories)")
    if is_target_dir(path):
        return [path]
    if tvm is not None:
        candidate = path / target_dirname(tvm)
        if not is_target_dir(candidate):
            raise InputError(f"{path}: no records for target {dumps(tvm)} (looked for {candidate.name}/)")
        return [candidate]
    found = target_dirs(path)
    if not found:
        raise InputError(f"{path}: neither a tuning target directory ({TARGET_JSON} not found) nor a tuning "
                         f"directory holding one")
    return found


def resolve_one(arg: str | Path, tvm: dict | None = None) -> Path:
    """Exactly one target directory: a root holding several needs `tvm` (the CLI's --target) to pick one."""
    found = resolve(arg, tvm)
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise InputError(f"{arg}: holds {len(found)} target directories ({names}); pass one of them, or --target "
                         f"T.yaml to pick one")
    return found[0]


def check_same_target(first: Path, tvm_first: dict, other: Path, tvm_other: dict) -> None:
    """Refuse to mix records of two targets (TVM's databases are not target-aware)."""
    if tvm_first != tvm_other:
        raise InputError(f"{first / TARGET_JSON} and {other / TARGET_JSON}: different targets ({dumps(tvm_first)} vs "
                         f"{dumps(tvm_other)}); records of one target must not be applied to another")

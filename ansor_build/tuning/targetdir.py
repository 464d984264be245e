"""Finding the per-target directories of a record store from command-line arguments (the `db` tools).

An argument is a target directory (it holds target.json, or task files whose target.json was lost), or a tuning
directory holding target directories: then the one of the given target, else its only one. A target directory
without its target.json is still found (and reported: see `read_target`); a tuning build of its target rewrites
the file (`TuningStore.restore_target_file`).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .. import jsonfile
from .store import FORMAT, dumps, target_dirname

TARGET_JSON = "target.json"
MAX_TARGET_BYTES = 1 << 20


def is_target_dir(path: Path) -> bool:
    return (Path(path) / TARGET_JSON).is_file()


def lost_target(path: Path) -> bool:
    """A target directory whose target.json is missing: it holds task files (`<key>.jsonl`) but no target.json."""
    path = Path(path)
    return path.is_dir() and not (path / TARGET_JSON).exists() and any(path.glob("*.jsonl"))


def holds_records(path: Path) -> bool:
    """A target directory, with its target.json or without (lost)."""
    return is_target_dir(path) or lost_target(path)


def missing_target_message(directory: Path, tvm: dict | None = None) -> str:
    """One line: which target.json is missing, and how to get it back."""
    directory = Path(directory)
    named = (f" (--target names {target_dirname(tvm)}/, not this directory)" if tvm is not None else
             ", or pass --target T.yaml if the directory is named for that target")
    return (f"{directory / TARGET_JSON}: missing, so the target of its records is unknown; restore it, or run a "
            f"build of its target with --tuning-dir {directory.parent} and --tune reuse (it rewrites the file)"
            f"{named}")


def read_target(directory: Path, tvm: dict | None = None) -> dict:
    """The TVM target (dict form) of a target directory, from its target.json (one-line errors).

    Without target.json, `tvm` (the target a command was given) is the directory's target when the directory
    is named for it (`target_dirname`: the name holds the hash of its mapping).
    """
    path = Path(directory) / TARGET_JSON
    if not path.exists():
        if tvm is not None and Path(directory).name == target_dirname(tvm):
            return tvm
        if lost_target(directory):
            raise InputError(missing_target_message(directory, tvm))
        raise InputError(f"{directory}: not a tuning target directory ({TARGET_JSON} not found)")
    doc = jsonfile.load(path, f"{TARGET_JSON} not found", MAX_TARGET_BYTES)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("tvm"), dict):
        raise InputError(f"{path}: not a format-{FORMAT} target file (expected {{\"format\": {FORMAT}, \"tvm\": {{...}}}})")
    return doc["tvm"]


def target_dirs(root: Path) -> list[Path]:
    """The target directories directly under a tuning directory (with or without target.json), sorted."""
    return sorted(p for p in Path(root).iterdir() if p.is_dir() and holds_records(p))


def resolve(arg: str | Path, tvm: dict | None = None) -> list[Path]:
    """Every target directory an argument names: itself, the one for `tvm` under it, or all under it."""
    path = Path(arg)
    if not path.is_dir():
        raise InputError(f"{path}: {'not a directory' if path.exists() else 'not found'} (expected a tuning "
                         f"directory or one of its target directories)")
    if holds_records(path):
        return [path]
    if tvm is not None:
        candidate = path / target_dirname(tvm)
        if not holds_records(candidate):
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

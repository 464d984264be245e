"""Merging record stores of one target (from branches, machines or CI runs) into one, deterministically.

Per workload (task key): the records are the union, deduplicated by (trace, args_info) with the faster duplicate
kept, best TOP_K first. `trials` is the largest count of any input, not the sum: stores from branches or CI runs
share the history of their common ancestor, which a sum counts twice (marking under-tuned tasks as fully tuned);
the largest count can only under-count, which costs a few trials later, never a task left under-tuned. `exhausted`
if any input says so; `budget` (the task had its share of a complete run) the largest; `default_us` the smallest
measured; `failed` and `last_error` from the input with the most trials; name and workload from the input whose
(name, workload) sorts first (one key is one subgraph; names may differ between models). Task lists (models/) are
united. The output does not depend on the order of the inputs; corrupt files (records that cannot be true
included, see `store.record_problem`) and different targets are refused. A directory that lost its target.json is
taken for the target it is named for (`--target`, or another input's target) and the output gets the file back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from . import tasklist
from .store import Entry, best_records, directory_lock, dumps, entry_text, read_entry, record_problem, \
    target_dirname, target_json_text, write_atomic
from .targetdir import TARGET_JSON, check_same_target, holds_records, lost_target, read_target

log = logging.getLogger(__name__)


@dataclass
class MergeResult:
    output: Path
    inputs: list[Path]
    workloads: int
    records: int
    written: int  # files created or changed
    task_lists: int


def read_store(directory: Path) -> tuple[dict[str, Entry], dict[str, str]]:
    """Every task file (strictly parsed) and task list of a target directory."""
    entries = {}
    for path in sorted(Path(directory).glob("*.jsonl")):
        entry = read_entry(path, strict=True)
        if entry.header.get("key", path.stem) != path.stem:
            raise InputError(f"{path}: header key '{entry.header.get('key')}' does not match the file name")
        entries[path.stem] = entry
    lists = {}
    for path in sorted((Path(directory) / tasklist.MODELS_DIR).glob("*.json")):
        if tasklist.read_tasks(path) is None:
            raise InputError(f"{path}: not a format-{tasklist.FORMAT} task list")
        lists[path.name] = path.read_text(encoding="utf-8")
    return entries, lists


def merge_entries(entries: list[Entry]) -> tuple[dict, list[dict]]:
    """The header and records of one workload merged from several stores (see the module docstring)."""
    base = min(entries, key=lambda e: dumps([e.header.get("name"), e.header["workload"]])).header
    header = dict(base, trials=max(e.trials for e in entries))
    header.pop("default_us", None)
    header.pop("exhausted", None)
    defaults = [e.default_us for e in entries if e.default_us is not None]
    if defaults:
        header["default_us"] = min(defaults)
    if any(e.exhausted for e in entries):
        header["exhausted"] = True
    header.pop("budget", None)
    if any(e.budget for e in entries):
        header["budget"] = max(e.budget for e in entries)
    # The failure count goes with the trial count it is part of: both from the store that measured the most.
    header.pop("failed", None)
    header.pop("last_error", None)
    most = max(entries, key=lambda e: (e.trials, dumps(e.header))).header
    header.update({name: most[name] for name in ("failed", "last_error") if name in most})
    records = []
    for entry in entries:  # a record plausible in its own file may not be against another's smaller default
        for record in entry.records:
            problem = record_problem(record, header.get("default_us"))
            if problem:
                log.warning("%s: a record not merged: %s", entry.path, problem)
            else:
                records.append(record)
    return header, best_records(records)


def _output_dir(output: Path, tvm: dict) -> Path:
    """Like cp: an existing target directory is merged into; an existing other directory receives the target
    directory (named after the target); a new path becomes the target directory."""
    if output.exists() and not output.is_dir():
        raise InputError(f"{output}: exists and is not a directory")
    if output.is_dir() and not holds_records(output):
        return output / target_dirname(tvm)
    return output


def _target_of(directory: Path, tvm: dict | None, hint: dict | None) -> dict:
    """`read_target`; a directory without target.json named for `hint` (another input's target) is that target."""
    if tvm is None and hint is not None and lost_target(directory) and directory.name == target_dirname(hint):
        return hint
    return read_target(directory, tvm)


def merge(inputs: list[Path], output: Path, tvm: dict | None = None) -> MergeResult:
    """Merge target directories of one target into `output` (which may be one of them, or hold records already).

    `tvm`: the target the command was given (--target), which names directories that lost their target.json.
    """
    inputs = [Path(p) for p in inputs]
    hint = tvm or next((read_target(p) for p in inputs if not lost_target(p)), None)
    targets = [_target_of(p, tvm, hint) for p in inputs]
    for path, target in zip(inputs[1:], targets[1:]):
        check_same_target(inputs[0], targets[0], path, target)
    out = _output_dir(Path(output), targets[0])
    if holds_records(out):
        check_same_target(inputs[0], targets[0], out, _target_of(out, tvm, targets[0]))
    sources = [p for p in inputs if not (out.exists() and p.resolve() == out.resolve())]
    stores = [read_store(p) for p in sources]  # everything is validated before anything is written
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{out}: cannot create directory: {err.strerror}") from None
    with directory_lock(out):
        stores.append(read_store(out))
        by_key: dict[str, list[Entry]] = {}
        lists: dict[str, tuple[Path, str]] = {}
        for directory, (entries, task_lists) in zip([*sources, out], stores):
            for key, entry in entries.items():
                by_key.setdefault(key, []).append(entry)
            for name, text in task_lists.items():
                seen = lists.setdefault(name, (directory, text))
                if seen[1] != text:
                    raise InputError(f"{seen[0] / tasklist.MODELS_DIR / name} and {directory / tasklist.MODELS_DIR / name}:"
                                     f" different task lists under one name; delete the wrong one")
        written = _write_if_changed(out / TARGET_JSON, target_json_text(targets[0]))
        records = 0
        for key in sorted(by_key):
            header, kept = merge_entries(by_key[key])
            records += len(kept)
            written += _write_if_changed(out / f"{key}.jsonl", entry_text(header, kept))
        if lists:
            (out / tasklist.MODELS_DIR).mkdir(exist_ok=True)
        for name, (_, text) in sorted(lists.items()):
            written += _write_if_changed(out / tasklist.MODELS_DIR / name, text)
    log.debug("merged %d workloads into %s", len(by_key), out)
    return MergeResult(out, sources, len(by_key), records, written, len(lists))


def _write_if_changed(path: Path, text: str) -> int:
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return 0
    write_atomic(path, text)
    return 1

"""`ansor-build db stats`: what a record store holds, per target directory and per workload."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from . import tasklist
from .progress import format_us
from .store import dumps, read_entry
from .targetdir import read_target


def store_stats(directory: Path, tvm: dict | None = None) -> dict:
    """Totals and one row per workload (sorted by name, then key); unreadable lines (records that cannot be true
    included) are counted, not fatal. A missing or unreadable target.json gives target None and `target_error`
    (`tvm`, the command's --target, names the target of a directory named for it)."""
    directory = Path(directory)
    try:
        target, target_error = read_target(directory, tvm), None
    except InputError as err:
        target, target_error = None, str(err)
    rows, versions = [], set()
    for path in sorted(directory.glob("*.jsonl")):
        entry = read_entry(path)
        versions.update(str(r["tvm"]) for r in entry.records if r.get("tvm"))
        rows.append({"key": path.stem, "name": entry.header.get("name") if entry.header else None,
                     "trials": entry.trials, "records": len(entry.records),
                     "best_us": round(entry.best_us, 3) if entry.best_us is not None else None,
                     "default_us": entry.default_us, "exhausted": entry.exhausted,
                     "budget": entry.budget,
                     "unreadable_lines": len(entry.corrupt)})
    rows.sort(key=lambda row: (row["name"] or "", row["key"]))
    stats = {"directory": str(directory), "target": target, "workloads": len(rows),
             "records": sum(r["records"] for r in rows), "trials": sum(r["trials"] for r in rows),
             "task_lists": len(list((directory / tasklist.MODELS_DIR).glob("*.json"))),
             "tvm_versions": sorted(versions), "tasks": rows}
    if target_error:
        stats["target_error"] = target_error
    return stats


def format_stats(stats: dict) -> str:
    """A summary line, the target, and a table: name, key, trials, records, best, default, speedup, notes."""
    lines = [f"{stats['directory']}: {stats['workloads']} workloads, {stats['records']} records, "
             f"{stats['trials']} trials, {stats['task_lists']} task lists; records from apache-tvm "
             f"{', '.join(stats['tvm_versions']) or '-'}",
             f"target {dumps(stats['target'])}" if stats["target"] is not None else
             f"target unknown: {stats.get('target_error')}",
             f"{'task':<34} {'key':<16} {'trials':>6} {'records':>7} {'best':>11} {'default':>11} {'speedup':>7}  notes"]
    for row in stats["tasks"]:
        speedup = f"{row['default_us'] / row['best_us']:.1f}x" if row["default_us"] and row["best_us"] else "-"
        notes = [note for flag, note in ((row["exhausted"], "exhausted"),
                                         (row["budget"] and row["budget"] > row["trials"],
                                          f"share of {row['budget']}/task"),
                                         (row["name"] is None, "no header"),
                                         (row["unreadable_lines"], f"{row['unreadable_lines']} unreadable lines"))
                 if flag]
        lines.append(f"{(row['name'] or '?')[:34]:<34} {row['key']:<16} {row['trials']:>6} {row['records']:>7} "
                     f"{format_us(row['best_us']):>11} {format_us(row['default_us']):>11} {speedup:>7}  "
                     f"{', '.join(notes)}".rstrip())
    return "\n".join(lines)

"""`ansor-build db prune`: drop the records of workloads that no kept model uses (a dry run unless applied).

The kept task keys come from models (their task lists in the store, else the caller partitions them with TVM,
~1-3 s each) or from records files (`PACKAGE.records.json` lists every task of its model). Task lists that name a dropped task go
too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from . import tasklist
from .driver import records_file_tasks
from .store import directory_lock, dumps, read_entry


@dataclass
class PrunePlan:
    directory: Path
    kept: int
    dropped: list[dict] = field(default_factory=list)  # key, name, trials, records
    dropped_lists: list[Path] = field(default_factory=list)

    def lines(self, applied: bool) -> list[str]:
        if not self.dropped and not self.dropped_lists:
            return [f"{self.directory}: nothing to drop ({self.kept} workloads in use)"]
        verb = "dropped" if applied else "would drop"
        out = [f"{self.directory}: {verb} {len(self.dropped)} of {len(self.dropped) + self.kept} workloads and "
               f"{len(self.dropped_lists)} task lists"]
        out += [f"  {row['key']}  {row['name'] or '?'}  ({row['trials']} trials, {row['records']} records)"
                for row in self.dropped]
        out += [f"  {path.relative_to(self.directory).as_posix()}" for path in self.dropped_lists]
        if not applied:
            out.append("dry run: pass --apply to delete these files")
        return out


def model_keys(models: list[Path], shapes: dict | None, directory: Path, partition) -> set[str]:
    """The task keys of models: from their task lists in the target directory when present, else
    `partition(model)` (the task keys TVM finds for the directory's target)."""
    from ..model import external_data_files, files_sha256

    keys: set[str] = set()
    for model in models:
        model = Path(model)
        if not model.is_file():
            raise InputError(f"{model}: model file not found")
        sha = files_sha256([model, *external_data_files(model, present=True)])
        tasks = tasklist.read_tasks(tasklist.list_path(directory, sha, shapes))
        keys.update(partition(model) if tasks is None else tasks)
    return keys


def records_keys(files: list[Path], tvm: dict) -> set[str]:
    """Every task key the records files list (each must be for the store's target)."""
    return {key for path in files for key in records_file_tasks(Path(path), tvm)}


def plan_prune(directory: Path, keep: set[str]) -> PrunePlan:
    directory = Path(directory)
    plan = PrunePlan(directory, kept=0)
    dropped = set()
    for path in sorted(directory.glob("*.jsonl")):
        if path.stem in keep:
            plan.kept += 1
            continue
        entry = read_entry(path)
        dropped.add(path.stem)
        plan.dropped.append({"key": path.stem, "name": entry.header.get("name") if entry.header else None,
                             "trials": entry.trials, "records": len(entry.records)})
    for path in sorted((directory / tasklist.MODELS_DIR).glob("*.json")):
        tasks = tasklist.read_tasks(path)
        if tasks is not None and dropped.intersection(tasks):
            plan.dropped_lists.append(path)
    return plan


def apply_prune(plan: PrunePlan) -> None:
    """Delete what the plan drops (under the target directory's lock)."""
    with directory_lock(plan.directory):
        for row in plan.dropped:
            (plan.directory / f"{row['key']}.jsonl").unlink(missing_ok=True)
        for path in plan.dropped_lists:
            path.unlink(missing_ok=True)


def check_target(directory: Path, store_tvm: dict, tvm: dict, source: str) -> None:
    if store_tvm != tvm:
        raise InputError(f"{directory}/target.json: records are for target {dumps(store_tvm)}; {source} gives "
                         f"{dumps(tvm)}")

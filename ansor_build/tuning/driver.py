"""One model's tuning step: plan, tune what the plan selects (claiming tasks against concurrent builds), and pick
the records the build applies."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from pathlib import Path

from ..errors import InputError
from .. import jsonfile
from .options import TuningOptions
from .plan import Plan, make_plan
from .progress import Progress, summary_table
from .store import dumps, open_store, record_problem, workload_problem, write_atomic
from .threads import MAX_THREADS

log = logging.getLogger(__name__)

RECORDS_FORMAT = 1
MAX_RECORDS_BYTES = 64 << 20  # one applied record and its workload per task: far less for real models


def tune_and_select(label: str, tasks, ms_tasks, target, tvm_target, options: TuningOptions, log_dir: Path,
                    progress: Progress | None = None) -> tuple[Plan, dict]:
    """Returns the plan (as it was before tuning) and the applied records: key -> {name, workload, record}."""
    from ..backend.records import applied_records

    if options.mode == "off":
        return make_plan(tasks, None, options), {}
    store = open_store(options.tuning_dir, target.tuned_tvm())
    store.restore_target_file()
    plan = make_plan(tasks, store, options)
    log.info("%s: %s", label, plan.line())
    if plan.to_tune:
        store.check_writable()  # a read-only store fails now, not after the first measured batch
        history = log_dir / "progress.jsonl"
        history.unlink(missing_ok=True)  # this build's tuning only
        progress = progress or Progress(label, history=history)
        _tune_claimed(plan, tasks, ms_tasks, store, target, tvm_target, options, log_dir, progress)
    applied = applied_records(store, [t.key for t in tasks])
    fallback = [t.name for t in tasks if t.key not in applied]
    if fallback:
        log.info("%s: %d of %d tasks use default schedules (no record, or none faster): %s", label, len(fallback), len(tasks),
                 ", ".join(fallback[:6]) + (" ..." if len(fallback) > 6 else ""))
    return plan, applied


def _tune_claimed(plan, tasks, ms_tasks, store, target, tvm_target, options, log_dir, progress) -> None:
    """Tune the tasks no other build is tuning; then wait for those and tune whatever they left undone."""
    from ..backend.tune import check_allowed, tune_tasks

    check_allowed(plan)
    threads = target.threads or _cpu_count()
    runner = target.runner
    if runner.is_rpc:  # candidates are linked here for the device: a missing (cross) compiler fails now
        from ..toolchain import find_compiler

        runner = dataclasses.replace(runner, cxx=find_compiler(target))
    pending = {t.key for t in plan.to_tune}
    for wait in (False, True):
        with contextlib.ExitStack() as stack:
            claimed = {key for key in sorted(pending) if stack.enter_context(store.claim(key, wait=wait))}
            if not claimed:
                continue
            # Re-plan under the claim. Tasks another build held were tuned by it meanwhile: the second round
            # only finishes what it left undone (incremental), whatever this build's mode.
            round_options = options if not wait else dataclasses.replace(options, mode="incremental")
            current = make_plan(tasks, store, round_options)
            for task_plan in current.tasks:
                task_plan.tune = task_plan.tune and task_plan.key in claimed
            pending -= claimed
            result = tune_tasks(current, ms_tasks, store, tvm_target, round_options, log_dir, progress, threads,
                                runner)
            _log_summary(progress.label, result, store)
            if result.stopped:
                return
        if not pending:
            return


def _log_summary(label: str, result, store) -> None:
    rows = []
    for state in result.tasks:
        entry = store.entry(state.key)
        # a task the run did not reach (its budget ended first) keeps its default schedule until a later build
        status = "tuned" if state.trials else "not reached" if result.stopped else "no trials"
        rows.append({"name": state.name, "key": state.key, "weight": state.weight, "status": status,
                     "trials": entry.trials, "best_us": entry.best_us, "default_us": entry.default_us})
    if rows:
        log.info("%s tuning summary:\n%s", label, summary_table(rows))


def _cpu_count() -> int:
    import os

    return os.cpu_count() or 1


def records_text(tvm_target: dict, task_keys: list[str], applied: dict, threads: int | None = None) -> str:
    """The bytes of a records file (canonical JSON: the same records give the same bytes on every machine).

    `threads`: the runtime thread count chosen for these records (tuning/threads.py), when one was.
    """
    doc = {"format": RECORDS_FORMAT, "target": tvm_target, "tasks": sorted(task_keys), "records": applied}
    if threads is not None:
        doc["runtime_threads"] = threads
    return dumps(doc) + "\n"


def write_records_file(path: Path, tvm_target: dict, task_keys: list[str], applied: dict,
                       threads: int | None = None) -> bool:
    """Write the applied records (canonical JSON); leave the file untouched if equal. True if it changed.

    `tasks` lists every task key of the model (what `db prune --keep-records` keeps). An existing file is
    replaced only when it is a records file (ours, of any target): anything else is refused with one line.
    """
    text = records_text(tvm_target, task_keys, applied, threads)
    path = Path(path)
    if check_records_out(path) == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text)
    return True


def check_records_out(path: Path) -> str | None:
    """The text of the records file at `path` (None if there is none); InputError when something that is not a
    records file is there (a build must never overwrite what ansor-build did not write)."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise InputError(f"{path}: exists and is not a records file (a directory, link or device); choose another "
                         f"--records-out path")
    if not path.exists():
        return None
    try:
        current = jsonfile.read_text(path, "not found", MAX_RECORDS_BYTES)
    except InputError:
        current = None
    if not _is_records_file(current):
        raise InputError(f"{path}: exists and is not an ansor-build records file; refusing to overwrite it: "
                         f"choose another --records-out path")
    return current


def _is_records_file(text: str | None) -> bool:
    try:
        data = jsonfile.parse(text) if text is not None else None
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("format") == RECORDS_FORMAT and "records" in data


def records_file_problem(data) -> str | None:
    """Why a parsed records file (format and target already checked) cannot be applied, or None."""
    tasks, applied = data.get("tasks", []), data.get("records")
    if not isinstance(tasks, list) or not all(isinstance(key, str) for key in tasks):
        return "tasks is not a list of task keys"
    if not isinstance(applied, dict):
        return "records is not an object (task key -> applied record)"
    listed = set(tasks) if "tasks" in data else None
    for key, item in sorted(applied.items()):
        if listed is not None and key not in listed:
            return f"record of task {key}: not one of the file's tasks"
        if not isinstance(item, dict) or "record" not in item:
            return f"record of task {key}: not {{name, workload, record}}"
        if item.get("name") is not None and not isinstance(item["name"], str):
            return f"record of task {key}: name is not a string"
        problem = workload_problem(item.get("workload")) or record_problem(item["record"])
        if problem:
            return f"record of task {key}: {problem}"
    threads = data.get("runtime_threads")
    if threads is not None and not (isinstance(threads, int) and not isinstance(threads, bool)
                                    and 1 <= threads <= MAX_THREADS):
        return f"runtime_threads {threads!r:.40} is not a thread count (1 to {MAX_THREADS})"
    return None


def _load_records_file(path: Path, tvm_target: dict) -> dict:
    data = jsonfile.load(path, "records file not found", MAX_RECORDS_BYTES)
    if not isinstance(data, dict) or data.get("format") != RECORDS_FORMAT:
        raise InputError(f"{path}: not an ansor-build records file (format {RECORDS_FORMAT})")
    if data.get("target") != tvm_target:
        raise InputError(f"{path}: records are for target {dumps(data.get('target'))[:300]}, not for "
                         f"{dumps(tvm_target)}")
    problem = records_file_problem(data)
    if problem:
        raise InputError(f"{path}: {problem}; write the file again (ansor-build tune ... --records-out {path.name})")
    return data


def read_records_file(path: Path, tvm_target: dict) -> dict:
    """The applied records of a records file written for `tvm_target` (one-line errors otherwise: a file that is
    not JSON, too large, of another shape or target, or holds a record that cannot be true)."""
    return _load_records_file(path, tvm_target)["records"]


def records_file_threads(path: Path, tvm_target: dict) -> int | None:
    """The runtime thread count chosen for a records file's records, if one was."""
    return _load_records_file(path, tvm_target).get("runtime_threads")


def records_file_tasks(path: Path, tvm_target: dict) -> list[str]:
    """Every task key of the model a records file was written for (applied or not)."""
    return list(_load_records_file(path, tvm_target).get("tasks", []))


def records_file_target(path: Path):
    """The target a records file names, or None when it cannot be read (its error comes when it is read whole)."""
    try:
        data = jsonfile.load(path, "records file not found", MAX_RECORDS_BYTES)
    except InputError:
        return None
    return data.get("target") if isinstance(data, dict) else None

"""One model's tuning step: plan, tune what the plan selects (claiming tasks against concurrent builds), and pick
the records the build applies."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path

from ..errors import InputError
from ..jsonfile import load_json
from .options import TuningOptions
from .plan import Plan, make_plan
from .progress import Progress, summary_table
from .store import dumps, open_store

log = logging.getLogger(__name__)

RECORDS_FORMAT = 1


def tune_and_select(label: str, tasks, ms_tasks, target, tvm_target, options: TuningOptions, log_dir: Path,
                    progress: Progress | None = None) -> tuple[Plan, dict]:
    """Returns the plan (as it was before tuning) and the applied records: key -> {name, workload, record}."""
    from ..backend.records import applied_records

    if options.mode == "off":
        return make_plan(tasks, None, options), {}
    store = open_store(options.tuning_dir, target.tuned_tvm())
    plan = make_plan(tasks, store, options)
    log.info("%s: %s", label, plan.line())
    if plan.to_tune:
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
        rows.append({"name": state.name, "key": state.key, "weight": state.weight, "status": "tuned",
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

    `tasks` lists every task key of the model (what `db prune --keep-records` keeps).
    """
    text = records_text(tvm_target, task_keys, applied, threads)
    path = Path(path)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return True


def _load_records_file(path: Path, tvm_target: dict) -> dict:
    data = load_json(path, "records file not found")
    if not isinstance(data, dict) or data.get("format") != RECORDS_FORMAT:
        raise InputError(f"{path}: not an ansor-build records file (format {RECORDS_FORMAT})")
    if data.get("target") != tvm_target:
        raise InputError(f"{path}: records are for target {dumps(data.get('target'))}, not for "
                         f"{dumps(tvm_target)}")
    return data


def read_records_file(path: Path, tvm_target: dict) -> dict:
    """The applied records of a records file written for `tvm_target` (one-line errors otherwise)."""
    return _load_records_file(path, tvm_target)["records"]


def records_file_threads(path: Path, tvm_target: dict) -> int | None:
    """The runtime thread count chosen for a records file's records, if one was."""
    threads = _load_records_file(path, tvm_target).get("runtime_threads")
    return int(threads) if isinstance(threads, int) and threads > 0 else None



def records_file_tasks(path: Path, tvm_target: dict) -> list[str]:
    """Every task key of the model a records file was written for (applied or not)."""
    return [str(key) for key in _load_records_file(path, tvm_target).get("tasks", [])]

"""Converting between the record store's JSON and MetaSchedule objects; the database a build applies."""

from __future__ import annotations

import hashlib

from ..errors import InputError
from ..tuning.store import dumps, record_latency_us, record_problem, workload_problem
from . import import_tvm


def intrinsics_family(target) -> str:
    """Which tensor intrinsics a target can use: only these are imported (all of them take ~30-55 s)."""
    if target.kind.name == "cuda":
        return "cuda"
    triple = str(target.attrs.get("mtriple", ""))
    return "arm_cpu" if triple.startswith(("aarch64", "arm")) else "x86"


def import_intrinsics(family: str) -> None:
    """Import one family of tensor intrinsics and make `import tvm.s_tir.tensor_intrin` a no-op.

    MetaSchedule imports the whole package in the main process and in every builder worker; its __init__ imports
    every family (26-55 s), which makes each build trial hit its timeout. Registering the package module without
    running its __init__ and importing one family takes ~0.2 s. Also the initializer of builder workers.
    """
    import importlib
    import importlib.util
    import sys

    import_tvm()
    name = "tvm.s_tir.tensor_intrin"
    if name not in sys.modules:
        spec = importlib.util.find_spec(name)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        sys.modules["tvm.s_tir"].tensor_intrin = module
    importlib.import_module(f"{name}.{family}")


def workload_json(mod) -> list:
    from tvm.s_tir import meta_schedule as ms

    return ms.database.Workload(mod).as_json()


def record_from_measurement(trace, workload, run_secs, target, args_info) -> dict:
    """The store's form of one measured candidate (run times in microseconds)."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule import _ffi_api

    as_json = _plain_json(_ffi_api.TuningRecordAsJSON(ms.database.TuningRecord(trace, workload, run_secs, target,
                                                                                 args_info)))
    return {"trace": as_json[0], "run_us": [float(s) * 1e6 for s in as_json[1]], "args_info": as_json[3]}


def _plain_json(obj):
    """A TVM JSON-like object as plain Python, the way MetaSchedule's JSONDatabase writes it: other objects (the
    IndexMaps of layout-rewriting traces) become their TVM JSON graph string, which TuningRecordFromJSON reads."""
    import tvm_ffi

    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj if not isinstance(obj, str) else str(obj)
    if isinstance(obj, tvm_ffi.Array):
        return [_plain_json(item) for item in obj]
    if isinstance(obj, tvm_ffi.Map):
        return {str(key): _plain_json(value) for key, value in obj.items()}
    value = getattr(obj, "value", None)  # IntImm, FloatImm
    if isinstance(value, (bool, int, float)):
        return value
    from tvm.ir import save_json

    return save_json(obj)


def to_tuning_record(record: dict, workload, target):
    from tvm.s_tir import meta_schedule as ms

    as_json = [record["trace"], [us / 1e6 for us in record["run_us"]], target.export(), record["args_info"]]
    return ms.database.TuningRecord.from_json(as_json, workload)


def applied_records(store, keys: list[str]) -> dict[str, dict]:
    """key -> the best record of each task that has one and beats the task's unscheduled code (what a build
    applies). With few trials the best schedule found can be slower than no schedule (e.g. a small pooling).
    Only records that can be true are applied (`record_problem`: the store's reader skips the others already)."""
    chosen = {}
    for key in keys:
        entry = store.entry(key)
        if not (entry.records and entry.header) or workload_problem(entry.header.get("workload")):
            continue
        record = next((r for r in entry.records if record_problem(r, entry.default_us) is None), None)
        if record is None:
            continue
        if entry.default_us is not None and record_latency_us(record) > entry.default_us:
            continue
        chosen[key] = {"name": entry.header.get("name"), "workload": entry.header["workload"], "record": record}
    return chosen


def records_digest(applied: dict[str, dict]) -> str:
    """Identity of the applied records (part of the package's identity and of its cache key). A record that
    cannot be true is an InputError: no package is identified by (or built with) it."""
    for key, item in sorted(applied.items()):
        problem = record_problem(item.get("record") if isinstance(item, dict) else None)
        if problem:
            raise InputError(f"applied record of task {key}: {problem}")
    return hashlib.sha256(dumps({k: v["record"] for k, v in sorted(applied.items())}).encode()).hexdigest()


def memory_database(applied: dict[str, dict], target, extra: dict[str, list[dict]] | None = None):
    """A MetaSchedule MemoryDatabase holding the applied records (and `extra` records per key, for warm starts)."""
    import_tvm()
    from tvm.s_tir import meta_schedule as ms

    database = ms.database.MemoryDatabase()
    for key, item in sorted(applied.items()):
        workload = database.commit_workload(ms.database.Workload.from_json(item["workload"]).mod)
        database.commit_tuning_record(to_tuning_record(item["record"], workload, target))
    for key, (workload_json, records) in sorted((extra or {}).items()):
        workload = database.commit_workload(ms.database.Workload.from_json(workload_json).mod)
        for record in records:
            database.commit_tuning_record(to_tuning_record(record, workload, target))
    return database

"""The tuning record store: one directory per normalized target, one JSON-lines file per tuned subgraph.

Layout (meant to be committed or cached by product repos; stable text, deterministic order, small diffs):

    <tuning_dir>/<kind>-<arch>-<cpu>-<hash8>/target.json    the TVM target (dict form) the records belong to
    <tuning_dir>/<kind>-<arch>-<cpu>-<hash8>/<task key>.jsonl
        line 1:  {"format", "key", "name", "trials", "workload"}   trials = every measured trial, failed included
                 (+ "failed": how many of them failed to build or run, "last_error": the latest failure's line;
                    "budget": the largest trials-per-task budget of a run that gave the task its share;
                    "exhausted": its search ran out of candidates)
        line 2+: {"args_info", "run_us", "trace", "tvm"}         best first, at most TOP_K, failed ones not kept
    <tuning_dir>/<kind>-<arch>-<cpu>-<hash8>/models/<key16>.json  a model's task keys (see `tasklist`)

TVM's own databases are not target-aware (records of one CPU would be applied to another), hence a directory per
target, named by a hash of the target's `tvm:` mapping. Writers hold an exclusive lock on `<dir>/.lock` for each
read-modify-write and replace files by rename, so concurrent builds lose nothing and readers never see half a file.
A line that does not parse is reported (file and line) and skipped, and kept verbatim at the end of the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

log = logging.getLogger(__name__)

FORMAT = 1
TOP_K = 32
FAILED_US = 1e9  # MetaSchedule stores a failed run as 1e10 s


def dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def target_dirname(tvm_target: dict) -> str:
    """`llvm-x86_64-haswell-1a2b3c4d`: readable, and unique per distinct `tvm:` mapping."""
    digest = hashlib.sha256(dumps(tvm_target).encode()).hexdigest()[:8]
    cpu_part = tvm_target.get("host", tvm_target) if tvm_target.get("kind") == "cuda" else tvm_target
    arch = cpu_part.get("mtriple", "unknown").split("-")[0]
    device = tvm_target.get("arch") or tvm_target.get("mcpu") or "generic"
    return f"{tvm_target.get('kind', 'unknown')}-{arch}-{device}-{digest}"


def target_json_text(tvm_target: dict) -> str:
    """The bytes of `target.json`, the target (TVM dict form) a directory's records belong to."""
    return json.dumps({"format": FORMAT, "tvm": tvm_target}, indent=2, sort_keys=True) + "\n"


def record_latency_us(record: dict) -> float:
    runs = record["run_us"]
    return sum(runs) / len(runs)


def _record_order(record: dict):
    # Latency first; the rest only breaks exact ties, so any input order gives the same file.
    return (record_latency_us(record), dumps(record["trace"]), dumps(record))


def record_identity(record: dict) -> str:
    """What makes two records the same candidate: its trace and argument info (not its measured time)."""
    return dumps(record["trace"]) + dumps(record["args_info"])


def best_records(records) -> list[dict]:
    """Records deduplicated by identity (the faster of duplicates kept), best first, at most TOP_K: the order and
    selection of a task file, the same whatever order the records come in."""
    merged: dict[str, dict] = {}
    for record in records:
        ident = record_identity(record)
        if ident not in merged or _record_order(record) < _record_order(merged[ident]):
            merged[ident] = record
    return sorted(merged.values(), key=_record_order)[:TOP_K]


def entry_text(header: dict, records: list[dict], corrupt=()) -> str:
    """The bytes of a task file: header line, records in the given order, then kept unparsable lines."""
    return "\n".join([dumps(header), *(dumps(r) for r in records), *corrupt]) + "\n"


@dataclass
class Entry:
    """The parsed file of one task: header, records best first, and lines that did not parse."""

    path: Path
    header: dict | None = None
    records: list[dict] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)

    @property
    def trials(self) -> int:
        return int(self.header.get("trials", 0)) if self.header else len(self.records)

    @property
    def exhausted(self) -> bool:
        """The search found no new candidates before reaching its trial budget (e.g. a reshape)."""
        return bool(self.header and self.header.get("exhausted"))

    @property
    def budget(self) -> int:
        """The largest trials-per-task budget of a tuning run that included this task and ran to its end.

        The run's task scheduler shares its budget (trials per task x tasks) by where it gains most, so a small
        task may end with fewer trials than the budget: it has had its share, and plans treat it as fully tuned.
        """
        value = self.header.get("budget", 0) if self.header else 0
        return int(value) if isinstance(value, int) and value > 0 else 0

    def complete(self, trials_per_task: int) -> bool:
        """Tuned enough for `trials_per_task`: that many trials, its share of such a run, or nothing left to try."""
        return self.trials >= trials_per_task or self.budget >= trials_per_task or self.exhausted

    @property
    def best_us(self) -> float | None:
        return record_latency_us(self.records[0]) if self.records else None

    @property
    def default_us(self) -> float | None:
        return self.header.get("default_us") if self.header else None



def _valid_record(obj) -> bool:
    return (isinstance(obj, dict) and isinstance(obj.get("run_us"), list) and obj["run_us"]
            and all(isinstance(x, (int, float)) for x in obj["run_us"]) and "trace" in obj and "args_info" in obj)


def read_entry(path: Path, strict: bool = False) -> Entry:
    """Parse a task file. A bad line is logged, skipped and kept (`Entry.corrupt`); `strict` raises InputError
    naming the file and line instead (tools that rewrite stores refuse to guess)."""
    entry = Entry(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return entry
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        reason = None
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            obj, reason = None, f"invalid JSON ({err.msg} at column {err.colno})"
        if reason is None and number == 1:
            if isinstance(obj, dict) and obj.get("format") == FORMAT and "workload" in obj:
                entry.header = obj
                continue
            reason = f"not a format-{FORMAT} header"
        elif reason is None and not _valid_record(obj):
            reason = "not a tuning record (needs run_us, trace, args_info)"
        elif reason is None:
            entry.records.append(obj)
            continue
        if strict:
            raise InputError(f"{path}:{number}: {reason}; fix or delete the line")
        log.warning("%s:%d: %s; line skipped (kept in the file)", path, number, reason)
        entry.corrupt.append(line)
    if strict and entry.header is None:
        raise InputError(f"{path}: empty task file (expected a format-{FORMAT} header line)")
    entry.records.sort(key=_record_order)
    return entry


class TuningStore:
    """The records of one target under a tuning directory."""

    def __init__(self, tuning_dir: Path, tvm_target: dict, tvm_version: str):
        self.directory = Path(tuning_dir) / target_dirname(tvm_target)
        self.tvm_target = tvm_target
        self.tvm_version = tvm_version

    def _ensure(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"{self.directory}: cannot create tuning directory: {err.strerror}") from None
        meta = self.directory / "target.json"
        if not meta.exists():
            write_atomic(meta, target_json_text(self.tvm_target))

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.jsonl"

    def entry(self, key: str) -> Entry:
        return read_entry(self.path(key))

    def keys(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.jsonl"))

    @contextlib.contextmanager
    def locked(self):
        """Exclusive lock of this target's records (held briefly, for one read-modify-write)."""
        self._ensure()
        with directory_lock(self.directory):
            yield

    @contextlib.contextmanager
    def claim(self, key: str, wait: bool):
        """Hold `key` while tuning it, so a concurrent build waits and then reuses instead of tuning twice.

        Yields True when claimed, False when another process holds it and `wait` is False.
        """
        self._ensure()
        locks = self.directory / ".claims"
        locks.mkdir(exist_ok=True)
        with open(locks / f"{key}.lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def mark_exhausted(self, key: str) -> None:
        """Record that tuning this task further finds nothing new: plans treat it as fully tuned."""
        self._update_header(key, lambda entry: None if entry.exhausted else {"exhausted": True})

    def mark_budget(self, key: str, budget: int) -> None:
        """Record that the task had its share of a run of `budget` trials per task (see `Entry.budget`)."""
        self._update_header(key, lambda entry: None if entry.budget >= budget else {"budget": int(budget)})

    def _update_header(self, key: str, change) -> None:
        """Merge `change(entry)` (fields, or None for nothing) into a task file's header; no header yet: no file."""
        with self.locked():
            entry = self.entry(key)
            fields = change(entry) if entry.header is not None else None
            if fields:
                write_atomic(self.path(key), entry_text(dict(entry.header, **fields), entry.records, entry.corrupt))

    def add(self, key: str, name: str, workload, records: list[dict], trials: int,
            default_us: float | None = None, failed: int = 0, error: str | None = None) -> Entry:
        """Merge measured records of one task (and count `trials` more) into its file.

        `default_us`, the latency of the task's unscheduled code, is kept in the header: a build applies no record
        slower than that. `failed` of the trials failed to build or run (a device died, a build timed out); they
        are counted in the header with the latest `error` line, and not kept as records.
        """
        with self.locked():
            entry = self.entry(key)
            header = dict(entry.header or {"format": FORMAT, "key": key, "name": name, "trials": 0,
                                            "workload": workload})
            header["trials"] = int(header.get("trials", 0)) + trials
            if default_us is not None:
                header["default_us"] = round(default_us, 4)
            if failed:
                header["failed"] = int(header.get("failed", 0)) + failed
                header["last_error"] = str(error or "")[:300]
            measured = [dict(r, tvm=self.tvm_version) for r in records if record_latency_us(r) < FAILED_US]
            kept = best_records([*entry.records, *measured])
            write_atomic(self.path(key), entry_text(header, kept, entry.corrupt))
            entry.header, entry.records = header, kept
            return entry


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` by rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@contextlib.contextmanager
def directory_lock(directory: Path):
    """Exclusive lock on `<directory>/.lock`: the writers of one target directory take turns."""
    with open(Path(directory) / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_store(tuning_dir: Path, tvm_target: dict) -> TuningStore:
    from ..backend import versions

    return TuningStore(tuning_dir, tvm_target, versions()["apache-tvm"])

"""The tuning record store: one directory per normalized target, one JSON-lines file per tuned subgraph.

Layout (meant to be committed or cached by product repos; stable text, deterministic order, small diffs):

    <tuning_dir>/<kind>-<arch>-<cpu>-<hash8>/target.json    the TVM target (dict form) the records belong to
    <tuning_dir>/<kind>-<arch>-<cpu>-<hash8>/<task key>.jsonl
        line 1:  {"format", "key", "name", "trials", "workload"}   trials = every measured trial, failed included
                 (+ "failed": how many of them failed to build or run, "last_error": the latest failure's line;
                    "budget": the largest trials-per-task budget of a run that gave the task its share;
                    "exhausted": its search ran out of candidates)
        line 2+: {"args_info", "run_us", "trace", "tvm"}         best first, at most TOP_K, failed ones not kept
                 run_us: measured latencies (us), each at least MIN_US and below FAILED_US; a record more than
                 PLAUSIBLE_SPEEDUP times faster than the header's default_us is a measurement error, not a record
    <tuning_dir>/<kind>-<arch>-<cpu>-<hash8>/models/<key16>.json  a model's task keys (see `tasklist`)

TVM's own databases are not target-aware (records of one CPU would be applied to another), hence a directory per
target, named by a hash of the target's `tvm:` mapping. Writers hold an exclusive lock on `<dir>/.lock` for each
read-modify-write and replace files by rename, so concurrent builds lose nothing and readers never see half a file.
A line that does not parse, or holds a record that cannot be true (see `record_problem`), is reported (file and
line) and skipped, and kept verbatim at the end of the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from .. import jsonfile

log = logging.getLogger(__name__)

FORMAT = 1
TOP_K = 32
FAILED_US = 1e9  # MetaSchedule stores a failed run as 1e10 s
MIN_US = 1e-3  # 1 ns: no measured kernel call is faster
PLAUSIBLE_SPEEDUP = 1000  # tuned kernels beat unscheduled code by ~10-100x; 1000x more is a broken measurement
MAX_RUNS = 1000  # run_us values of one record (MetaSchedule's runner measures `repeat` times, 1 by default)
MAX_COUNT = 10**9  # trials, failures
MAX_FILE_BYTES = 64 << 20  # a task file holds one header and TOP_K records (a few MB for the largest workloads)


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


def _short(value, limit: int = 60) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict, str)) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def latency_problem(value, what: str) -> str | None:
    """Why `value` cannot be a measured latency in microseconds (None when it can)."""
    if not _is_number(value) or not MIN_US <= value < FAILED_US:  # NaN and infinities fail the comparison too
        return f"{what} {_short(value)} is not a latency (a number of microseconds from {MIN_US:g} to {FAILED_US:g})"
    return None


def failed_record(record) -> bool:
    """A measurement MetaSchedule marked as failed (run times of 1e10 s): counted as a trial, never kept."""
    runs = record.get("run_us") if isinstance(record, dict) else None
    return isinstance(runs, list) and any(_is_number(x) and x >= FAILED_US for x in runs)


def record_problem(record, default_us: float | None = None) -> str | None:
    """Why `record` cannot be a true tuning record (None when it can): not a record, a run time that is no latency
    (negative, zero, NaN, infinite, below MIN_US, a failure), or more than PLAUSIBLE_SPEEDUP times faster than
    `default_us`, the task's unscheduled code."""
    if not (isinstance(record, dict) and isinstance(record.get("run_us"), list) and "trace" in record
            and "args_info" in record):
        return "not a tuning record (needs run_us, trace, args_info)"
    if not isinstance(record["trace"], list) or not isinstance(record["args_info"], list):
        return "not a tuning record (trace and args_info must be lists)"
    runs = record["run_us"]
    if not runs or len(runs) > MAX_RUNS:
        return f"run_us has {len(runs)} values (expected 1 to {MAX_RUNS})"
    for value in runs:
        problem = latency_problem(value, "run_us value")
        if problem:
            return problem
    latency = record_latency_us(record)
    if default_us is not None and latency * PLAUSIBLE_SPEEDUP < default_us:
        return (f"run_us {latency:g} us is {default_us / latency:.0f}x faster than the task's default schedule "
                f"({default_us:g} us): not a plausible measurement (at most {PLAUSIBLE_SPEEDUP}x)")
    return None


def workload_problem(workload) -> str | None:
    """Why `workload` is not MetaSchedule's JSON of a workload: [structural hash, base64 module] (None if it is)."""
    if not (isinstance(workload, list) and len(workload) == 2 and all(isinstance(x, str) for x in workload)):
        return "workload is not [structural hash, base64 module] (two strings)"
    return None


def header_problem(header) -> str | None:
    """Why the first line of a task file is not a usable header (None when it is)."""
    if not (isinstance(header, dict) and header.get("format") == FORMAT and "workload" in header):
        return f"not a format-{FORMAT} header"
    if workload_problem(header["workload"]):
        return f"header {workload_problem(header['workload'])}"
    for name in ("key", "name", "last_error"):
        if header.get(name) is not None and not isinstance(header[name], str):
            return f"header {name} {_short(header[name])} is not a string"
    for name in ("trials", "failed", "budget"):
        value = header.get(name, 0)
        if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT):
            return f"header {name} {_short(value)} is not a count (an integer from 0 to {MAX_COUNT})"
    if header.get("default_us") is not None:
        return latency_problem(header["default_us"], "header default_us")
    return None


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


def _lines(path: Path) -> list[str] | None:
    """The lines of a task file (None when it does not exist). Lines that are not UTF-8 keep their bytes
    (surrogate escapes, written back as they were); they do not parse."""
    path = Path(path)
    if not path.exists():
        return None
    if path.is_dir() or not path.is_file():
        raise InputError(f"{path}: not a regular file (a task file was expected); remove it")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise InputError(f"{path}: cannot read: {err.strerror or err}") from None
    if len(data) > MAX_FILE_BYTES:
        raise InputError(f"{path}: larger than {MAX_FILE_BYTES >> 20} MiB, more than a task file holds (one header "
                         f"and {TOP_K} records); delete it (its task is tuned again)")
    return data.decode("utf-8", errors="surrogateescape").split("\n")


def read_entry(path: Path, strict: bool = False) -> Entry:
    """Parse a task file. A bad line (not JSON, not a header or record, or a record that cannot be true, see
    `record_problem`) is logged, skipped and kept (`Entry.corrupt`); `strict` raises InputError naming the file
    and line instead (tools that rewrite stores refuse to guess). A file that cannot be read at all (too large, a
    directory) is an InputError either way."""
    entry = Entry(path)
    lines = _lines(path)
    if lines is None:
        return entry
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            line.encode("utf-8")
            obj = jsonfile.parse(line, one_line=True)
        except UnicodeEncodeError:
            reason = "not UTF-8 text"
        except ValueError as err:
            reason = str(err)
        else:
            if number == 1:
                reason = header_problem(obj)
                if reason is None:
                    entry.header = obj
                    continue
            else:
                reason = record_problem(obj, entry.default_us)
                if reason is None:
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
            raise InputError(f"{self.directory}: cannot create tuning directory: {err.strerror}{_READ_ONLY_HINT}") \
                from None
        meta = self.directory / "target.json"
        if not meta.exists():
            try:
                write_atomic(meta, target_json_text(self.tvm_target))
            except OSError as err:
                raise InputError(f"{meta}: cannot write: {err.strerror or err}{_READ_ONLY_HINT}") from None

    def check_writable(self) -> None:
        """Fail now, in one line naming the directory, if tuning could not store its records here (before any
        trial is measured: a read-only store would otherwise fail at the first measured batch)."""
        self._ensure()
        for path in (self.directory, self.directory / ".lock", self.directory / ".claims"):
            mode = os.W_OK | (os.X_OK if path.is_dir() else 0)
            if path.exists() and not os.access(path, mode):
                what = "directory" if path == self.directory else path.name
                raise InputError(f"{self.directory}: tuning store is not writable ({what}){_READ_ONLY_HINT}")
        try:  # the real test (os.access does not see every read-only mount or ACL)
            handle, probe = tempfile.mkstemp(prefix=".write-test-", dir=self.directory)
            os.close(handle)
            os.unlink(probe)
        except OSError as err:
            raise InputError(f"{self.directory}: tuning store is not writable ({err.strerror or err})"
                             f"{_READ_ONLY_HINT}") from None

    def restore_target_file(self) -> None:
        """Rewrite a missing or unreadable `target.json` of this target's existing directory (its name is the
        hash of this target's mapping, so its records are this target's); one naming another target is refused.
        Only a warning where the store is read-only (builds that reuse records write nothing else)."""
        from .targetdir import read_target

        meta = self.directory / "target.json"
        if not self.directory.is_dir():
            return
        try:
            found = read_target(self.directory)
        except InputError as err:
            reason = "missing" if not meta.exists() else str(err).split(": ", 1)[-1]
        else:
            if found != self.tvm_target:
                raise InputError(f"{meta}: records are for target {dumps(found)}, but the directory is named for "
                                 f"{dumps(self.tvm_target)}; move the directory away, or delete {meta.name} if its "
                                 f"records are for this target")
            return
        try:
            write_atomic(meta, target_json_text(self.tvm_target))
        except OSError as err:
            log.warning("%s: %s, and not rewritten (%s)", meta, reason, err.strerror or err)
            return
        log.warning("%s: %s; rewritten for this target (the directory is named by its hash)", meta, reason)

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
        try:
            locks.mkdir(exist_ok=True)
        except OSError as err:
            raise InputError(f"{self.directory}: cannot write {locks.name}/ ({err.strerror or err}){_READ_ONLY_HINT}") \
                from None
        with _open_lock(locks / f"{key}.lock", self.directory, _READ_ONLY_HINT) as handle:
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
            if failed:
                header["failed"] = int(header.get("failed", 0)) + failed
                header["last_error"] = str(error or "")[:300]
            if default_us is not None:
                rounded = round(float(default_us), 4)
                problem = latency_problem(rounded, "measured default_us")
                if problem:
                    log.warning("%s: %s; not kept", self.path(key), problem)
                else:
                    header["default_us"] = rounded
            kept = []
            for record in [*entry.records, *(dict(r, tvm=self.tvm_version) for r in records)]:
                problem = record_problem(record, header.get("default_us"))
                if problem is None:
                    kept.append(record)
                elif not failed_record(record):  # failed trials are counted above, not kept
                    log.warning("%s: record of %s not kept: %s", self.path(key), name, problem)
            kept = best_records(kept)
            write_atomic(self.path(key), entry_text(header, kept, entry.corrupt))
            entry.header, entry.records = header, kept
            return entry


_READ_ONLY_HINT = ("; make it writable, pass another --tuning-dir, or build with --tune reuse (applies its records, "
                   "measures nothing)")
_WRITABLE_HINT = "; make it writable, or work on a copy"


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` by rename, so readers never see half a file. Kept lines that were not UTF-8 (surrogate
    escapes, see `read_entry`) are written back byte for byte."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8", errors="surrogateescape")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write leaves no temporary file behind


def _open_lock(path: Path, directory: Path, hint: str = _WRITABLE_HINT):
    """A lock file opened for flock; a store that cannot be written is a one-line InputError."""
    try:
        return open(path, "a+")
    except OSError as err:
        raise InputError(f"{directory}: cannot lock the tuning store ({path.name}: {err.strerror or err}){hint}") \
            from None


@contextlib.contextmanager
def directory_lock(directory: Path):
    """Exclusive lock on `<directory>/.lock`: the writers of one target directory take turns."""
    with _open_lock(Path(directory) / ".lock", directory) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_store(tuning_dir: Path, tvm_target: dict) -> TuningStore:
    from ..backend import versions

    return TuningStore(tuning_dir, tvm_target, versions()["apache-tvm"])

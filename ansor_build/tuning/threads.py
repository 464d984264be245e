"""The runtime thread count of a tuned CPU package, chosen by timing the whole model.

Kernels are tuned for the target's `num-cores` threads, but a model of many small kernels can run faster on fewer:
every parallel launch wakes and joins the thread pool, and for kernels of a microsecond or two that costs about what
the second core saves (with TVM's pool the MobileNet-style zoo model ran ~20% faster on one thread than on two, the
ResNet-style one ~40% slower; the package's own pool, `backend/parallel_pool.cc`, launches at a third of the cost,
and the model is timed as packages link it). So after tuning, a build that may measure times the model with the
tuned records at 1, 2, 4, ... up to `num-cores` threads, each count in a fresh process (a pool starts once), and
the package's loaders and runner use the fastest (manifest `runtime.threads`). Fewer threads win only when at least
MARGIN faster: on a tie the package keeps every core.

The choice is a tuning result, stored next to the records and reused like them:

    <tuning_dir>/<target dir>/threads/<key16>.json
        {"format", "records_sha256", "latency_us": {"1": .., "2": ..}, "threads"}

`key16` names the model's task list (models/<key16>.json: model bytes, input shapes, tool versions);
`records_sha256` is the digest of the records applied when it was measured: other records are measured again, and builds that only reuse records
(`reuse` mode, `ANSOR_BUILD_FORBID_TUNING`) apply a stored choice but never measure. A target that sets
`runtime.threads` keeps it; so do packages that cannot run here (other CPUs, GPUs, RPC tuning). `db merge` does
not carry thread counts: the merged records are timed again by the next tuning build.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import InputError
from .. import jsonfile
from .store import dumps, write_atomic
from .tasklist import THREADS_DIR, list_path

log = logging.getLogger(__name__)

FORMAT = 2  # 2: timed with the package's thread pool (1: TVM's, which made fewer threads look better)
MARGIN = 0.05  # fewer threads must be at least 5% faster
ROUNDS = 7  # medians of up to ROUNDS rounds of up to REPEAT runs, per thread count
REPEAT = 100
# Seconds the runs of one thread count may take (warm-up apart): a model of fast kernels, where the thread count
# matters, gets every run; a slow one (an untuned ResNet-50 takes seconds a call: 720 runs were 25 minutes) as many
# as fit, at least MIN_RUNS. A thread count's process that takes longer than TIMEOUT_S ends the measurement, and
# the package keeps every core.
SECONDS = 5.0
WARMUP_SECONDS = 1.0
MIN_RUNS = 3
TIMEOUT_S = 600
MAX_THREADS = 4096


def candidates(max_threads: int) -> list[int]:
    """1, 2, 4, ... below `max_threads`, then `max_threads`."""
    counts, count = [], 1
    while count < max_threads:
        counts.append(count)
        count *= 2
    return [*counts, max_threads]


def choice_path(target_dir: Path, model_sha256: str, shapes: dict | None) -> Path:
    """`threads/<key16>.json`: beside `models/`, not in it (whose files are all task lists)."""
    return Path(target_dir) / THREADS_DIR / list_path(target_dir, model_sha256, shapes).name


def stored_choice(path: Path, records_sha256: str) -> int | None:
    """The thread count measured for these records, or None (missing, unreadable, other records, or a count
    that cannot be one: not an integer from 1 to MAX_THREADS)."""
    try:
        doc = jsonfile.parse(jsonfile.read_text(path, "not found", 1 << 20))
    except (InputError, ValueError):
        return None
    if not (isinstance(doc, dict) and doc.get("format") == FORMAT and doc.get("records_sha256") == records_sha256):
        return None
    threads = doc.get("threads")
    valid = isinstance(threads, int) and not isinstance(threads, bool) and 1 <= threads <= MAX_THREADS
    return threads if valid else None


def fastest(latency_us: dict[int, float]) -> int:
    """The fastest thread count, unless it is within MARGIN of the most threads (then those: a tie keeps every
    core)."""
    most = max(latency_us)
    best = min(latency_us, key=lambda count: (latency_us[count], -count))
    return best if latency_us[best] <= latency_us[most] * (1 - MARGIN) else most


def store_choice(path: Path, records_sha256: str, latency_us: dict[int, float], threads: int) -> None:
    doc = {"format": FORMAT, "records_sha256": records_sha256, "threads": threads,
           "latency_us": {str(count): round(us, 2) for count, us in sorted(latency_us.items())}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, dumps(doc) + "\n")
    except OSError as err:
        log.warning("%s: thread count not stored (%s)", path, err)


def may_choose(target) -> bool:
    """A CPU package of this machine's CPU, measured here, whose target does not set `runtime.threads`."""
    return (target.device == "cpu" and target.runs_on_host and not target.runner.is_rpc
            and "threads" not in target.spec.get("runtime", {}))


def choose(prepared, options, applied: dict, compile_model) -> int | None:
    """The runtime thread count of a build that applies `applied`: stored, else measured when `options` allow.

    None: keep the target's own (not a CPU package of this machine, `runtime.threads` set, nothing applied, or
    not allowed to measure). `compile_model()` returns the compiled model (a Relax VM executable).
    """
    from ..backend.records import records_digest
    from .store import target_dirname

    target = prepared.target
    if not applied or options is None or options.tuning_dir is None or not may_choose(target):
        return None
    most = int(target.tuned_tvm().get("num-cores") or os.cpu_count() or 1)
    if most <= 1:
        return None
    digest = records_digest(applied)
    path = choice_path(Path(options.tuning_dir) / target_dirname(target.tuned_tvm()), prepared.model.sha256(),
                       prepared.shapes)
    stored = stored_choice(path, digest)
    if stored is not None or not options.may_measure or options.forbidden():
        return stored
    from ..toolchain import find_compiler

    try:
        latency = measure(compile_model(), [sig.as_dict() for sig in prepared.model.inputs], candidates(most),
                          find_compiler(target), target.cxx_flags)
    except RuntimeError as err:  # the package still works: with every core, as without a choice
        log.warning("%s for %s: runtime thread count not measured (%s); the package uses %d threads",
                    prepared.model.name, target.name, err, most)
        return None
    threads = fastest(latency)
    store_choice(path, digest, latency, threads)
    log.info("%s for %s: runtime threads %d (%s)", prepared.model.name, target.name, threads,
             ", ".join(f"{count}: {us:.1f} us" for count, us in sorted(latency.items())))
    return threads


def measure(executable, inputs: list[dict], counts: list[int], cxx: str = "g++", flags=()) -> dict[int, float]:
    """Median latency (us) of one call of `executable` (a Relax VM executable for this CPU) per thread count,
    linked as packages link it (`cxx`, `flags`; with the package's thread pool)."""
    from ..backend.codegen import export_library
    from ..package.loader import UNPINNED

    with tempfile.TemporaryDirectory(prefix="ansor-threads-") as tmp:
        library = Path(tmp) / "model.so"
        export_library(executable, library, cxx, list(flags), Path(tmp) / "link.log")
        (Path(tmp) / "inputs.json").write_text(json.dumps(inputs), encoding="utf-8")
        latency = {}
        for count in counts:
            env = dict(os.environ, TVM_NUM_THREADS=str(count))
            env.setdefault(*UNPINNED)  # as the package's loaders run it
            try:
                proc = subprocess.run([sys.executable, "-m", "ansor_build.tuning.threads", tmp], env=env,
                                      capture_output=True, text=True, timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"timing with {count} threads took over {TIMEOUT_S} s") from None
            if proc.returncode != 0:
                lines = (proc.stderr or proc.stdout).strip().splitlines()
                raise RuntimeError(f"timing with {count} threads failed: {lines[-1] if lines else 'no output'}")
            latency[count] = float(proc.stdout.split()[-1])
    return latency


def _time_here(directory: Path) -> float:
    """In a fresh process (TVM_NUM_THREADS set by the caller): the median latency of the model in `directory`."""
    from ..package.loader import default_input
    import tvm
    from tvm.runtime.vm import VirtualMachine

    inputs = json.loads((directory / "inputs.json").read_text(encoding="utf-8"))
    device = tvm.cpu(0)
    main = VirtualMachine(tvm.runtime.load_module(str(directory / "model.so")), device)["main"]
    tensors = [tvm.runtime.tensor(default_input(sig["shape"], sig["dtype"]), device) for sig in inputs]

    def once() -> float:
        start = time.perf_counter()
        main(*tensors)
        return time.perf_counter() - start

    call = min(once(), once())  # the first call also starts the thread pool
    for _ in range(min(20, int(WARMUP_SECONDS / call))):
        call = min(call, once())
    rounds, repeat = plan_runs(call)
    return statistics.median(statistics.median(once() for _ in range(repeat)) for _ in range(rounds)) * 1e6


def plan_runs(call_seconds: float) -> tuple[int, int]:
    """(rounds, runs per round) for a model whose call takes `call_seconds`: what fits SECONDS, at least MIN_RUNS
    runs, at most ROUNDS x REPEAT."""
    runs = max(MIN_RUNS, min(ROUNDS * REPEAT, int(SECONDS / max(call_seconds, 1e-9))))
    rounds = max(min(ROUNDS, runs // MIN_RUNS), 1)
    return rounds, runs // rounds


if __name__ == "__main__":
    print(f"{_time_here(Path(sys.argv[1])):.3f}")

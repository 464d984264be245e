"""RPC tuning benchmark: trials per minute with 1, 2, ... devices of a real TVM RPC tracker on this machine.

    python3 benchmarks/rpc.py [--model convnet] [--servers 1,2,3] [--trials-per-task 8] [--repeat 6] [--out DIR]

Starts `python -m tvm.exec.rpc_tracker` and the largest count of `python -m tvm.exec.rpc_server` on 127.0.0.1 (one
runtime thread each), then for each count N (the target's `tuning.runner.parallel`):

- measurement: the model's tasks, built once, each timed `--repeat` times through the RPC runner on N devices at once
  (candidates per minute: the device side alone, what a bigger farm speeds up);
- tuning: the model tuned end to end into a fresh store with a fresh cost model (trials per minute: search, build and
  measurement together).

Prints a Markdown table and writes DIR/rpc.json (default benchmarks/results/). The servers share this machine's
cores with the search and the builder: on a small machine those, not the devices, bound the end-to-end rate.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def measure_only(prepared, spec, workers: int, repeat: int) -> dict:
    """Candidates per minute of the RPC runner alone, on `workers` devices."""
    from tvm.s_tir import meta_schedule as ms

    from ansor_build.backend.records import import_intrinsics, intrinsics_family
    from ansor_build.backend.rpc import make_builder_runner

    family = intrinsics_family(prepared.tvm_target)
    builder, runner = make_builder_runner(spec, workers, os.cpu_count() or 1, functools.partial(import_intrinsics,
                                                                                                  family))
    try:
        tasks = prepared.ms_tasks
        built = builder.build([ms.builder.BuilderInput(t.dispatched[0], t.target) for t in tasks])
        assert all(b.error_msg is None for b in built), [b.error_msg for b in built]
        inputs = [ms.runner.RunnerInput(b.artifact_path, "cpu",
                                        ms.arg_info.ArgInfo.from_entry_func(t.dispatched[0], remove_preproc=True))
                  for t, b in zip(tasks, built)] * repeat
        started = time.perf_counter()
        results = [future.result() for future in runner.run(inputs)]
        seconds = time.perf_counter() - started
        for b in built:
            shutil.rmtree(os.path.dirname(b.artifact_path), ignore_errors=True)
    finally:
        runner.pool.shutdown()
    failed = [r.error_msg for r in results if r.error_msg]
    assert not failed, failed[:1]
    return {"candidates": len(inputs), "measure_s": round(seconds, 2),
            "candidates_per_min": round(len(inputs) / seconds * 60, 1)}


def tune(prepared, target, work: Path, trials_per_task: int) -> dict:
    """Trials per minute of one tuning run into a fresh store, with a fresh cost model."""
    from ansor_build.tuning import TuningOptions
    from ansor_build.tuning.driver import tune_and_select
    from ansor_build.tuning.progress import Progress
    from ansor_build.tuning.store import read_entry

    os.environ["ANSOR_BUILD_CACHE_DIR"] = str(work / "cache")
    options = TuningOptions(mode="incremental", tuning_dir=work / "tuning", trials_per_task=trials_per_task)
    started = time.perf_counter()
    tune_and_select(target.name, prepared.tasks, prepared.ms_tasks, target, prepared.tvm_target, options,
                    work / "logs", Progress(target.name, interactive=False))
    seconds = time.perf_counter() - started
    entries = [read_entry(p) for p in (work / "tuning").glob("*/*.jsonl")]
    trials = sum(e.trials for e in entries)
    return {"trials": trials, "failed": sum(e.header.get("failed", 0) for e in entries), "tune_s": round(seconds, 1),
            "trials_per_min": round(trials / seconds * 60, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="convnet")
    parser.add_argument("--servers", default="1,2,3")
    parser.add_argument("--trials-per-task", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=6, help="times each task is measured (measurement rows)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args()
    counts = [int(n) for n in args.servers.split(",")]
    os.environ.setdefault("TVM_NUM_THREADS", "1")

    from rpc_farm import KEY, Farm, write_target

    from ansor_build import zoo
    from ansor_build.build import prepare
    from ansor_build.target import load_target

    rows = []
    with tempfile.TemporaryDirectory(prefix="ansor-rpc-bench-") as tmp:
        tmp = Path(tmp)
        (tmp / "farm").mkdir()
        farm = Farm(tmp / "farm", threads=1)
        try:
            farm.add_servers(KEY, max(counts))
            model = zoo.write_model(args.model, tmp / f"{args.model}.onnx")
            prepared = None
            for n in counts:
                path = write_target(tmp / f"n{n}.yaml", farm.address, parallel=n, trials=args.trials_per_task)
                target = load_target(path)
                prepared = prepared or prepare(model, target, None, tuned=True)
                row = {"servers": n, "tasks": len(prepared.tasks),
                       **measure_only(prepared, target.runner, n, args.repeat),
                       **tune(prepared, target, tmp / f"n{n}", args.trials_per_task)}
                rows.append(row)
                print(f"done {n} server(s): {row}", file=sys.stderr)
        finally:
            farm.close()
    base = rows[0]
    lines = ["| servers | measurement: candidates/min | speed-up | tuning: trials | trials/min | speed-up | failed |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['servers']} | {r['candidates_per_min']:.0f} | "
                     f"{r['candidates_per_min'] / base['candidates_per_min']:.2f}x | {r['trials']} | "
                     f"{r['trials_per_min']:.0f} | {r['trials_per_min'] / base['trials_per_min']:.2f}x | "
                     f"{r['failed']} |")
    print("\n".join(lines))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rpc.json").write_text(json.dumps({"model": args.model, "trials_per_task": args.trials_per_task,
                                              "repeat": args.repeat, "cpus": os.cpu_count(), "rows": rows},
                                             indent=2) + "\n")
    print(f"\nwrote {out / 'rpc.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

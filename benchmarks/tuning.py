"""Tuning benchmark: the zoo built untuned and tuned with a fixed budget, against onnxruntime, in one run.

    python3 benchmarks/tuning.py [--trials-per-task 64] [--models mlp,convnet,...] [--target PRESET_OR_FILE]
                                 [--repeat 200] [--rounds 9] [--out DIR]

For every model: an untuned build, a tuned build (fresh tuning directory and cost model, `--trials-per-task` trials
for every task), and a fully-reused rebuild; then the untuned package, the tuned package and onnxruntime (same
thread count) are timed in interleaved rounds (`--rounds`, each the median of `--repeat` runs after a warm-up). The
latencies reported are the medians of the rounds; a speed-up is the median of the rounds' ratios (each round's
onnxruntime time over the package's, measured seconds apart), so that a slow spell of this shared machine, which
moves both sides of one round alike, does not tip it: on a noisy machine the ratios are what to read.

The target defaults to the host's ISA-level preset (`x86_64-avx512` where the CPU has AVX-512, else `x86_64-avx2`)
with `num-cores` set to this machine's CPU count; onnxruntime runs with as many threads, each package with the thread
count of its manifest (a tuned build times its model at 1, 2, ... threads and keeps the fastest: tuning/threads.py),
in a child process of its own. Writes DIR/tuning.json, DIR/tuning.md and
DIR/tuning.png (best latency versus trials for each model: how the search converges); DIR defaults to
benchmarks/results/.

Goals (issue 7): every conv model's tuned package at least as fast as onnxruntime, ResNet-style and MobileNet-style
at least 1.2x faster, within 64 trials per task.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# model -> speed-up over onnxruntime (onnxruntime latency / tuned latency) the tuned package must reach
GOALS = {"convnet": 1.0, "resnet": 1.2, "mobilenet": 1.2}


def goals(meta: dict) -> dict:
    """The goals apply to CPU targets (onnxruntime runs on the CPU either way)."""
    return GOALS if meta.get("device", "cpu") == "cpu" else {}


def host_preset() -> str:
    """The ISA-level preset of this machine: AVX-512 (F, BW, DQ, VL as in x86-64-v4), else AVX2."""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        flags = ""
    have = set(flags.split())
    return "x86_64-avx512" if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= have else "x86_64-avx2"


def timed_build(model, target, out, **kw):
    from ansor_build.build import build_package

    started = time.perf_counter()
    result = build_package(model, target, out, **kw)
    return result, time.perf_counter() - started


# Every contender runs in a child process of its own, the rounds interleaved from here: a package with its manifest's
# thread count (TVM starts its pool once per process), onnxruntime with the benchmark's. Each measurement starts
# after a pause, so that no thread pool still spinning from the last one takes a core from the next.
_TIMER = r"""
import json, pathlib, statistics, sys
sys.path.insert(0, sys.argv[1])
from ansor_build.check import onnxruntime_session, onnxruntime_times, sample_inputs
from ansor_build.package import loader

kind, package_dir = sys.argv[2], pathlib.Path(sys.argv[3])
if kind == "onnxruntime":
    manifest = json.loads((package_dir / "manifest.json").read_text())
    arrays = sample_inputs(manifest)
    session = onnxruntime_session(sys.argv[4], int(sys.argv[5]))
    feed = {sig["name"]: array for sig, array in zip(manifest["inputs"], arrays)}
    run = lambda repeat: onnxruntime_times(session, feed, repeat, warmup=10)
else:
    package = loader.load(package_dir)
    arrays = sample_inputs(package.manifest)
    run = lambda repeat: package.benchmark(arrays, warmup=10, repeat=repeat)
for line in sys.stdin:
    print(statistics.median(run(int(line))) * 1e3, flush=True)
"""
# TVM's pool workers spin (yielding) after a launch, onnxruntime's too: after 200 two-thread runs of an untuned
# package, 0.3 s was not enough (onnxruntime's MobileNet-style latency read 17 to 42 us in the rounds after it,
# 17 to 19 us with 1 s).
PAUSE_S = 1.0


class Timer:
    """One contender in a child process; `median_ms(repeat)` times `repeat` runs after a warm-up."""

    def __init__(self, args: list[str], threads: int):
        import subprocess

        self.threads = threads
        self.proc = subprocess.Popen([sys.executable, "-c", _TIMER, str(REPO), *args], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=dict(os.environ, TVM_NUM_THREADS=str(threads)))

    @classmethod
    def package(cls, path: Path) -> "Timer":
        threads = json.loads((Path(path) / "manifest.json").read_text())["runtime"]["threads"]
        return cls(["tvm", str(path)], threads)

    @classmethod
    def onnxruntime(cls, package: Path, model: Path, threads: int) -> "Timer":
        return cls(["onnxruntime", str(package), str(model), str(threads)], threads)

    def median_ms(self, repeat: int) -> float:
        time.sleep(PAUSE_S)
        self.proc.stdin.write(f"{repeat}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"timer {self.proc.args[3:]} exited with {self.proc.wait()}")
        return float(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def latencies(packages: dict, model_path, manifest, repeat: int, rounds: int) -> dict:
    """name -> each round's median latency (ms), rounds in order: onnxruntime with the benchmark's threads, each
    package with its own (`runtime.threads` of its manifest)."""
    from ansor_build.check import compare, reference_outputs, sample_inputs
    from ansor_build.package import loader

    arrays = sample_inputs(manifest)
    reference, _ = reference_outputs(model_path, manifest, arrays)
    for name, path in packages.items():
        assert compare(loader.load(path)(*arrays), reference)[2], f"{name} package does not match onnxruntime"
    timers = {name: Timer.package(path) for name, path in packages.items()}
    timers["onnxruntime"] = Timer.onnxruntime(next(iter(packages.values())), model_path,
                                              int(os.environ["TVM_NUM_THREADS"]))
    try:
        rounds_ms = {name: [] for name in timers}
        for index in range(rounds):
            order = list(timers)
            if index % 2:
                order.reverse()  # neither side always runs right after the other
            for name in order:
                rounds_ms[name].append(timers[name].median_ms(repeat))
    finally:
        for timer in timers.values():
            timer.close()
    return rounds_ms


def paired_speedup(reference: list[float], contender: list[float]) -> float:
    """Median over rounds of reference / contender: each ratio compares two timings taken seconds apart."""
    return statistics.median(r / c for r, c in zip(reference, contender, strict=True))


def read_history(path: Path) -> list[dict]:
    """(trials, estimated_us) after every measured batch of a tuned build (see ansor_build.tuning.progress)."""
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{"trials": r["trials"], "seconds": r["seconds"], "estimated_us": r["estimated_us"]}
            for r in rows if r.get("estimated_us") is not None]


def measure(name: str, work: Path, target: Path, trials_per_task: int, repeat: int, rounds: int,
            goals: dict = GOALS) -> dict:
    from ansor_build import zoo
    from ansor_build.target import load_target
    from ansor_build.tuning import TuningOptions
    from ansor_build.tuning.store import open_store

    model = zoo.write_model(name, work / f"{name}.onnx")
    tuning_dir = work / "tuning"
    timed_build(model, target, work / f"{name}-warmup")  # the runner binary is cached from here on
    untuned, untuned_s = timed_build(model, target, work / f"{name}-untuned")
    options = TuningOptions(mode="incremental", tuning_dir=tuning_dir, trials_per_task=trials_per_task)
    tuned, _ = timed_build(model, target, work / f"{name}-tuned", tuning=options)
    reuse = TuningOptions(mode="reuse", tuning_dir=tuning_dir, trials_per_task=trials_per_task)
    reused, reused_s = timed_build(model, target, work / f"{name}-reused", tuning=reuse)
    assert reused.manifest["files"] == tuned.manifest["files"], "a reused rebuild must give the same package"
    store = open_store(tuning_dir, load_target(target).tuned_tvm())
    trials = sum(store.entry(task.key).trials for task in tuned.tasks)
    tune_s = tuned.timings["tune"]
    return {
        "model": name, "tasks": len(tuned.tasks), "records_applied": tuned.manifest["tuning"]["records"],
        "trials": trials, "tune_s": round(tune_s, 1), "trials_per_min": round(trials / tune_s * 60, 1),
        "tuned_threads": tuned.manifest["runtime"]["threads"],
        "untuned_build_s": round(untuned_s, 2), "reused_build_s": round(reused_s, 2),
        **timing(name, work, repeat, rounds, goals),
        "history": read_history(work / f"{name}-tuned.logs" / "progress.jsonl"),
    }


def timing(name: str, work: Path, repeat: int, rounds: int, goals: dict = GOALS) -> dict:
    """The latency columns of a model whose untuned and tuned packages are in `work`."""
    untuned, tuned = work / f"{name}-untuned", work / f"{name}-tuned"
    manifest = json.loads((tuned / "manifest.json").read_text())
    per_round = latencies({"untuned": untuned, "tuned": tuned}, work / f"{name}.onnx", manifest, repeat, rounds)
    ms = {name: statistics.median(values) for name, values in per_round.items()}
    speedup = paired_speedup(per_round["onnxruntime"], per_round["tuned"])
    goal = goals.get(name)
    return {
        "untuned_ms": round(ms["untuned"], 4), "tuned_ms": round(ms["tuned"], 4),
        "onnxruntime_ms": round(ms["onnxruntime"], 4),
        "tuned_vs_onnxruntime": round(ms["tuned"] / ms["onnxruntime"], 3),
        "speedup_vs_onnxruntime": round(speedup, 3),
        "speedup_vs_untuned": round(paired_speedup(per_round["untuned"], per_round["tuned"]), 1),
        "rounds_ms": {name: [round(v, 6) for v in values] for name, values in per_round.items()},
        "goal_speedup_vs_onnxruntime": goal, "goal_met": None if goal is None else speedup >= goal,
    }


def markdown(rows: list[dict], meta: dict) -> str:
    where = "" if meta.get("device", "cpu") == "cpu" else \
        f" (packages on the {meta['device']} device, onnxruntime on the CPU)"
    retimed = " Latencies re-timed (`--retime`) from the packages of the tuning run." if meta.get("retimed") else ""
    lines = [f"Target `{meta['target']}`{where}, {meta['threads']} threads, {meta['trials_per_task']} trials per task "
             f"(medians of {meta['rounds']} interleaved rounds of {meta['repeat']} runs; a speed-up is the median of "
             f"the rounds' ratios).{retimed}", "",
             "| model | tasks | trials | tune s | trials/min | untuned ms | tuned ms | tuned threads | onnxruntime ms | "
             "speed-up vs onnxruntime | goal | untuned build s | reused build s |",
             "|" + "---|" * 13]
    for r in rows:
        goal = "-" if r["goal_speedup_vs_onnxruntime"] is None else \
            f"{r['goal_speedup_vs_onnxruntime']:.1f}x {'met' if r['goal_met'] else 'NOT met'}"
        lines.append(f"| {r['model']} | {r['tasks']} | {r['trials']} | {r['tune_s']:.0f} | {r['trials_per_min']:.0f} | "
                     f"{r['untuned_ms']:.3f} | {r['tuned_ms']:.3f} | {r.get('tuned_threads', '-')} | "
                     f"{r['onnxruntime_ms']:.3f} | "
                     f"{r['speedup_vs_onnxruntime']:.2f}x | {goal} | {r['untuned_build_s']:.2f} | "
                     f"{r['reused_build_s']:.2f} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, meta: dict) -> bool:
    """Best latency versus trials per model (sum of weight x best kernel latency, as tuning measured it), with the
    tuned package's and onnxruntime's measured latency. False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    columns = min(3, len(rows))
    lines = (len(rows) + columns - 1) // columns
    fig, axes = plt.subplots(lines, columns, figsize=(5 * columns, 3.6 * lines), squeeze=False)
    for ax, row in zip(axes.flat, rows):
        history = row["history"]
        if history:
            ax.step([h["trials"] for h in history], [h["estimated_us"] for h in history], where="post",
                    label="best kernels (tuning estimate)")
        ax.axhline(row["onnxruntime_ms"] * 1e3, color="tab:red", linestyle="--", label="onnxruntime")
        ax.axhline(row["tuned_ms"] * 1e3, color="tab:green", linestyle=":", label="tuned package")
        ax.set_yscale("log")
        ax.set_title(f"{row['model']}: {row['speedup_vs_onnxruntime']:.2f}x onnxruntime's speed")
        ax.set_xlabel("trials")
        ax.set_ylabel("latency (us)")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(rows):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize="small")
    fig.suptitle(f"{meta['target']}, {meta['threads']} threads, {meta['trials_per_task']} trials per task")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _kept_rows(path: Path, meta: dict, rows: list[dict]) -> list[dict]:
    """Rows of an earlier run with the same settings for the models this run did not measure, in zoo order."""
    from ansor_build import zoo

    if not path.is_file():
        return rows
    earlier = json.loads(path.read_text())
    same = all(earlier.get(key) == meta[key] for key in ("target", "threads", "trials_per_task"))
    if not same:
        print(f"not keeping {path}: measured with other settings", file=sys.stderr)
        return rows
    by_model = {row["model"]: row for row in earlier.get("models", [])}
    by_model.update({row["model"]: row for row in rows})
    return [by_model[name] for name in zoo.NAMES if name in by_model]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials-per-task", type=int, default=64)
    parser.add_argument("--models", default="mlp,convnet,resnet,mobilenet,transformer")
    parser.add_argument("--target", default=None, help="preset name or YAML file (default: the host's ISA preset)")
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--work", default=None,
                        help="keep the models, packages, tuning records and logs in this directory (default: a "
                             "temporary one, removed at the end), e.g. to `ansor-build profile` the tuned packages")
    parser.add_argument("--retime", action="store_true",
                        help="only time again the packages an earlier run kept in --work (no builds, no tuning): "
                             "the latency columns of the models named in OUT/tuning.json are replaced, the rest kept")
    parser.add_argument("--keep", action="store_true",
                        help="keep the rows of other models from DIR/tuning.json when it has the same target, threads "
                             "and budget (to measure a zoo in several sittings)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    os.environ.setdefault("TVM_NUM_THREADS", str(cores))
    base = args.target or host_preset()
    if Path(base).is_file():
        base = str(Path(base).resolve())
    from ansor_build.target import load_target
    from ansor_build.target.load import resolve_extends

    device = load_target(resolve_extends(base, REPO / "benchmarks" / "tuning.py")).device

    meta = {"target": base, "device": device, "threads": int(os.environ["TVM_NUM_THREADS"]),
            "trials_per_task": args.trials_per_task, "repeat": args.repeat, "rounds": args.rounds}
    if args.retime:
        return retime(args, meta)
    with tempfile.TemporaryDirectory(prefix="ansor-tune-bench-") as tmp:
        work = Path(args.work).resolve() if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        os.environ["ANSOR_BUILD_CACHE_DIR"] = str(work / "cache")  # fresh cost model and runner cache
        target = work / "bench.yaml"
        # CPU: the tuner and the runtime use every core; a GPU target keeps its own settings.
        # (no runtime.threads: each tuned package runs with the thread count its build chose, tuning/threads.py)
        cpu = f"tvm: {{num-cores: {cores}}}\n" if device == "cpu" else ""

        target.write_text(f"extends: {base}\nname: bench\n{cpu}")
        rows = []
        for name in args.models.split(","):
            rows.append(measure(name, work, target, args.trials_per_task, args.repeat, args.rounds, goals(meta)))

            row = {k: v for k, v in rows[-1].items() if k != "history"}
            print(f"done {name}: {row}", file=sys.stderr, flush=True)

    out = Path(args.out)
    rows = _kept_rows(out / "tuning.json", meta, rows) if args.keep else rows
    write_results(out, meta, rows)
    return 0


def retime(args, meta: dict) -> int:
    """--retime: the latency columns again, from the packages of an earlier run (--work) named in OUT/tuning.json."""
    if not args.work:
        raise SystemExit("--retime needs --work DIR: the directory an earlier run kept its packages in")
    work, out = Path(args.work).resolve(), Path(args.out)
    earlier = json.loads((out / "tuning.json").read_text())
    for key in ("target", "threads", "trials_per_task"):
        if earlier.get(key) != meta[key]:
            raise SystemExit(f"{out / 'tuning.json'}: measured with {key} {earlier.get(key)!r}, not {meta[key]!r}")
    names = args.models.split(",")
    rows = earlier["models"]
    for row in rows:
        if row["model"] in names:
            row.update(timing(row["model"], work, args.repeat, args.rounds, goals(meta)))
            print(f"retimed {row['model']}: {row['speedup_vs_onnxruntime']:.2f}x", file=sys.stderr, flush=True)
    write_results(out, {**meta, "retimed": True}, rows)
    return 0


def write_results(out: Path, meta: dict, rows: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(rows, meta)
    print(table)
    (out / "tuning.json").write_text(json.dumps({**meta, "models": rows}, indent=2) + "\n")
    (out / "tuning.md").write_text(table)
    drawn = plot(rows, out / "tuning.png", meta)
    print(f"wrote {out / 'tuning.json'}, {out / 'tuning.md'}" +
          (f", {out / 'tuning.png'}" if drawn else " (no plot: pip install matplotlib)"))


if __name__ == "__main__":
    sys.exit(main())

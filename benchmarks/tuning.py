"""Tuning benchmark: for every zoo model, untuned vs tuned vs onnxruntime latency, trials per minute, and the time of
a fully-reused rebuild versus an untuned compile (goal: within 1.2x).

    python3 benchmarks/tuning.py [--trials-per-task N] [--models mlp,convnet,...] [--out DIR]

Tuning uses the host preset (x86_64-avx2) with num-cores and runtime threads set to this machine's CPU count, a fresh
tuning directory and a fresh cost model. Prints a Markdown table and writes DIR/tuning.json (default
benchmarks/results/). Latencies are medians of interleaved rounds in one process (ratios are what to compare).
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


def timed_build(model, target, out, **kw):
    from ansor_build.build import build_package

    started = time.perf_counter()
    result = build_package(model, target, out, **kw)
    return result, time.perf_counter() - started


def latencies(packages: dict, model_path, manifest, repeat: int, rounds: int) -> dict:
    from ansor_build.check import compare, reference_outputs, sample_inputs
    from ansor_build.package import loader

    arrays = sample_inputs(manifest)
    reference, _ = reference_outputs(model_path, manifest, arrays)
    loaded = {name: loader.load(path) for name, path in packages.items()}
    times = {name: [] for name in [*loaded, "onnxruntime"]}
    for name, package in loaded.items():
        assert compare(package(*arrays), reference)[2], f"{name} package does not match onnxruntime"
    for _ in range(rounds):
        for name, package in loaded.items():
            times[name] += package.benchmark(arrays, warmup=3, repeat=repeat)
        times["onnxruntime"].append(reference_outputs(model_path, manifest, arrays, repeat=repeat)[1] / 1e3)
    return {name: statistics.median(values) * 1e3 for name, values in times.items()}


def measure(name: str, work: Path, trials_per_task: int, repeat: int, rounds: int) -> dict:
    from ansor_build import zoo
    from ansor_build.tuning import TuningOptions

    cores = os.cpu_count() or 1
    target = work / "host.yaml"
    target.write_text(f"extends: x86_64-avx2\nname: host\ntvm: {{num-cores: {cores}}}\nruntime: {{threads: {cores}}}\n")
    model = zoo.write_model(name, work / f"{name}.onnx")
    tuning_dir = work / "tuning"
    timed_build(model, target, work / f"{name}-warmup")  # the runner binary is cached from here on
    untuned, untuned_s = timed_build(model, target, work / f"{name}-untuned")
    options = TuningOptions(mode="incremental", tuning_dir=tuning_dir, trials_per_task=trials_per_task)
    tuned, tuned_s = timed_build(model, target, work / f"{name}-tuned", tuning=options)
    reuse = TuningOptions(mode="reuse", tuning_dir=tuning_dir, trials_per_task=trials_per_task)
    reused, reused_s = timed_build(model, target, work / f"{name}-reused", tuning=reuse)
    assert reused.manifest["files"] == tuned.manifest["files"], "a reused rebuild must give the same package"
    trials = sum(json.loads(line)["trials"] for path in tuning_dir.glob("*/*.jsonl")
                 for line in path.read_text().splitlines()[:1]
                 if json.loads(line).get("key") in {t.key for t in tuned.tasks})
    tune_s = tuned.timings["tune"]
    ms = latencies({"untuned": untuned.package, "tuned": tuned.package}, model, tuned.manifest, repeat, rounds)
    return {
        "model": name, "tasks": len(tuned.tasks), "records_applied": tuned.manifest["tuning"]["records"],
        "trials": trials, "tune_s": round(tune_s, 1), "trials_per_min": round(trials / tune_s * 60, 1),
        "untuned_build_s": round(untuned_s, 2), "reused_build_s": round(reused_s, 2),
        "reused_vs_untuned": round(reused_s / untuned_s, 2),
        "untuned_ms": round(ms["untuned"], 4), "tuned_ms": round(ms["tuned"], 4),
        "onnxruntime_ms": round(ms["onnxruntime"], 4), "tuned_vs_onnxruntime": round(ms["tuned"] / ms["onnxruntime"], 2),
        "speedup_vs_untuned": round(ms["untuned"] / ms["tuned"], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials-per-task", type=int, default=32)
    parser.add_argument("--models", default="mlp,convnet,resnet,mobilenet,transformer")
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args()
    os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="ansor-tune-bench-") as tmp:
        os.environ["ANSOR_BUILD_CACHE_DIR"] = str(Path(tmp) / "cache")  # fresh cost model and runner cache
        rows = []
        for name in args.models.split(","):
            rows.append(measure(name, Path(tmp), args.trials_per_task, args.repeat, args.rounds))
            print(f"done {name}: {rows[-1]}", file=sys.stderr)
    header = ("| model | tasks | trials | tune s | trials/min | untuned ms | tuned ms | onnxruntime ms | tuned/ort | "
              "untuned build s | reused build s | reused/untuned |")
    lines = [header, "|" + "---|" * 12]
    for r in rows:
        lines.append(f"| {r['model']} | {r['tasks']} | {r['trials']} | {r['tune_s']:.0f} | {r['trials_per_min']:.0f} | "
                     f"{r['untuned_ms']:.3f} | {r['tuned_ms']:.3f} | {r['onnxruntime_ms']:.3f} | "
                     f"{r['tuned_vs_onnxruntime']:.2f}x | {r['untuned_build_s']:.2f} | {r['reused_build_s']:.2f} | "
                     f"{r['reused_vs_untuned']:.2f}x |")
    print("\n".join(lines))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tuning.json").write_text(json.dumps({"trials_per_task": args.trials_per_task, "models": rows},
                                                indent=2) + "\n")
    print(f"\nwrote {out / 'tuning.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

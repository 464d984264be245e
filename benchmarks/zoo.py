"""Foundation benchmark: for every zoo model, compile time, package size, untuned latency vs onnxruntime, and the
SCons no-op rebuild time of the quickstart example.

    python3 benchmarks/zoo.py [--repeat N] [--rounds R] [--target targets/x86_64-avx2.yaml] [--out DIR]

Prints a Markdown table and writes DIR/zoo.json (default benchmarks/results/). Latencies are medians; the package
and onnxruntime are timed in one process, in interleaved rounds with the same inputs and thread count, so their
ratio is meaningful on a noisy machine even when absolute times drift.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def measure_model(name: str, work: Path, target: Path, repeat: int, rounds: int) -> dict:
    from ansor_build import zoo
    from ansor_build.build import build_package
    from ansor_build.check import compare, reference_outputs, sample_inputs
    from ansor_build.package import loader

    model_path = zoo.write_model(name, work / f"{name}.onnx")
    started = time.perf_counter()
    result = build_package(model_path, target, work / name)
    build_s = time.perf_counter() - started
    package = loader.load(result.package)
    arrays = sample_inputs(result.manifest)
    reference, _ = reference_outputs(model_path, result.manifest, arrays)
    max_abs, _, ok = compare(package(*arrays), reference)
    tvm_times, ort_times = [], []
    for _ in range(rounds):  # interleave so both see the same machine state
        tvm_times += package.benchmark(arrays, warmup=3, repeat=repeat)
        ort_times.append(reference_outputs(model_path, result.manifest, arrays, repeat=repeat)[1])
    tvm_ms = statistics.median(tvm_times) * 1e3
    ort_ms = statistics.median(ort_times)
    files = result.manifest["files"]
    return {
        "model": name, "tasks": len(result.tasks), "build_s": round(build_s, 3),
        "import_s": round(result.timings["import"], 3), "compile_s": round(result.timings["compile"], 3),
        "package_s": round(result.timings["package"], 3),
        "model_so_bytes": files["model.so"]["size"], "package_bytes": sum(f["size"] for f in files.values()),
        "untuned_ms": round(tvm_ms, 4), "onnxruntime_ms": round(ort_ms, 4), "ratio": round(tvm_ms / ort_ms, 2),
        "max_abs_diff": max_abs, "matches": ok, "threads": int(os.environ["TVM_NUM_THREADS"]),
    }


def scons_noop_seconds(work: Path, runs: int = 5) -> dict:
    project = work / "quickstart"
    shutil.copytree(REPO / "examples" / "quickstart", project, ignore=shutil.ignore_patterns("build", ".sconsign*"))
    env = {**os.environ, "ANSOR_BUILD_CACHE_DIR": str(work / "cache")}
    command = [sys.executable, "-m", "SCons", "-Q", "-j2"]
    first = time.perf_counter()
    subprocess.run(command, cwd=project, env=env, check=True, capture_output=True)
    full = time.perf_counter() - first
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=project, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return {"full_build_s": round(full, 2), "noop_s": round(statistics.median(times), 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default=str(REPO / "targets" / "x86_64-avx2.yaml"))
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args()
    os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))  # the same threads for TVM and onnxruntime
    from ansor_build import zoo

    with tempfile.TemporaryDirectory(prefix="ansor-bench-") as tmp:
        rows = [measure_model(name, Path(tmp), Path(args.target), args.repeat, args.rounds) for name in zoo.NAMES]
        scons = scons_noop_seconds(Path(tmp))
    header = ("| model | tasks | build s | model.so KiB | package KiB | untuned ms | onnxruntime ms | ratio | "
              "max abs diff |")
    lines = [header, "|" + "---|" * 9]
    for r in rows:
        lines.append(f"| {r['model']} | {r['tasks']} | {r['build_s']:.2f} | {r['model_so_bytes'] / 1024:.0f} | "
                     f"{r['package_bytes'] / 1024:.0f} | {r['untuned_ms']:.3f} | {r['onnxruntime_ms']:.3f} | "
                     f"{r['ratio']:.1f}x | {r['max_abs_diff']:.1e} |")
    lines.append("")
    lines.append(f"SCons quickstart (2 models): full build {scons['full_build_s']:.2f} s, "
                 f"no-op rebuild {scons['noop_s']:.3f} s (median of 5). Threads: {rows[0]['threads']}.")
    print("\n".join(lines))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "zoo.json").write_text(json.dumps({"target": args.target, "models": rows, "scons": scons}, indent=2) + "\n")
    print(f"\nwrote {out / 'zoo.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

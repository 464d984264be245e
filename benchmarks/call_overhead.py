"""Call overhead: what a package call costs beyond its kernels, next to onnxruntime's, timed as users call both.

    python3 benchmarks/call_overhead.py [--models mlp,convnet,...] [--onnx MODEL.onnx ...] [--calls N] [--rounds R]
                                        [--target targets/x86_64-avx2.yaml] [--work DIR] [--out DIR]

Builds each model untuned for the target (zoo models by name, real models by path), then times, each runtime in its
own fresh process and in alternating rounds (the same inputs and thread count):

- `call`: the package's loader as users call it, `model(x)` (numpy in, numpy out);
- `kernels`: the same model on inputs prepared once, outputs left as TVM tensors (`benchmark(kernels=True)`);
- `copying`: numpy in and out the way the loader did before zero-copy (inputs copied into new TVM tensors,
  outputs copied out with `.numpy()`), to show what that cost;
- onnxruntime `run`: `session.run` with numpy in and out, and `iobinding`: `run_with_iobinding` on bound inputs.

Overheads are `call - kernels` and `run - iobinding` (medians of every call of every round). Prints a Markdown table
and writes DIR/call_overhead.json (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _median_us(call, calls: int, warmup: int = 20, seconds: float = 2.0) -> float:
    """Median of `calls` timed calls after `warmup` ones; fewer of both for a slow model (what fits `seconds`: at
    least 2 warm-up calls and 10 timed ones)."""
    start = time.perf_counter()
    done = 0
    while done < warmup and (done < 2 or time.perf_counter() - start < seconds / 4):
        call()
        done += 1
    per_call = (time.perf_counter() - start) / done
    calls = max(10, min(calls, int(seconds / max(per_call, 1e-9))))
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def worker_loader(package: str, calls: int) -> dict:
    import numpy as np

    sys.path.insert(0, package)
    import loader  # the package's own copy, as users load it

    model = loader.load(package)
    arrays = model.default_inputs()
    tensors = model.prepare(*arrays)
    tvm = model._tvm

    def copying():
        inputs = [tvm.runtime.tensor(np.ascontiguousarray(a), model.device) for a in arrays]
        return [out.numpy() for out in model.run_prepared(inputs)]

    def kernels():
        model.run_prepared(tensors)
        model.device.sync()

    # interleaved in one process: each measure sees the same machine state
    rows = {"call": [], "kernels": [], "copying": []}
    for _ in range(3):
        rows["call"].append(_median_us(lambda: model(*arrays), calls // 3))
        rows["kernels"].append(_median_us(kernels, calls // 3))
        rows["copying"].append(_median_us(copying, calls // 3))
    return {key: statistics.median(values) for key, values in rows.items()}


def worker_onnxruntime(model_path: str, package: str, calls: int) -> dict:
    from ansor_build.check import onnxruntime_session
    from ansor_build.package import loader

    manifest = loader.read_manifest(package)
    session = onnxruntime_session(Path(model_path), loader.runtime_threads(manifest))
    feed = {sig["name"]: loader.default_input(sig["shape"], sig["dtype"]) for sig in manifest["inputs"]}
    binding = session.io_binding()
    for name, array in feed.items():
        binding.bind_cpu_input(name, array)
    for output in session.get_outputs():
        binding.bind_output(output.name, "cpu")
    rows = {"run": [], "iobinding": []}
    for _ in range(3):
        rows["run"].append(_median_us(lambda: session.run(None, feed), calls // 3))
        rows["iobinding"].append(_median_us(lambda: session.run_with_iobinding(binding), calls // 3))
    return {key: statistics.median(values) for key, values in rows.items()}


def _in_fresh_process(args: list[str], threads: int) -> dict:
    env = {**os.environ, "TVM_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"worker {args[:2]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(name: str, model_path: Path, target: Path, work: Path, calls: int, rounds: int) -> dict:
    from ansor_build.build import build_package
    from ansor_build.package import loader

    package = work / "packages" / name
    current = (REPO / "ansor_build" / "package" / "loader.py").read_bytes()
    if not (package / "manifest.json").is_file() or (package / "loader.py").read_bytes() != current:
        build_package(model_path, target, package)  # a kept package is reused only with today's loader
    threads = loader.runtime_threads(loader.read_manifest(package))
    tvm_rounds, ort_rounds = [], []
    for _ in range(rounds):  # alternating: both runtimes see the same machine, one runtime per process
        tvm_rounds.append(_in_fresh_process(["--worker", "loader", str(package), str(calls)], threads))
        ort_rounds.append(_in_fresh_process(["--worker", "onnxruntime", str(model_path), str(package), str(calls)],
                                            threads))
    med = lambda rows, key: round(statistics.median(r[key] for r in rows), 2)  # noqa: E731
    row = {"model": name, "threads": threads, "call_us": med(tvm_rounds, "call"),
           "kernels_us": med(tvm_rounds, "kernels"), "copying_us": med(tvm_rounds, "copying"),
           "onnxruntime_run_us": med(ort_rounds, "run"), "onnxruntime_iobinding_us": med(ort_rounds, "iobinding"),
           "rounds": {"loader": tvm_rounds, "onnxruntime": ort_rounds}}
    row["loader_overhead_us"] = round(row["call_us"] - row["kernels_us"], 2)
    row["copying_overhead_us"] = round(row["copying_us"] - row["kernels_us"], 2)
    row["onnxruntime_overhead_us"] = round(row["onnxruntime_run_us"] - row["onnxruntime_iobinding_us"], 2)
    row["call_vs_onnxruntime"] = round(row["call_us"] / row["onnxruntime_run_us"], 3)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| model | kernels us | call us | loader overhead us | overhead before (copying) us | "
             "onnxruntime run us | onnxruntime overhead us | call / onnxruntime |", "|" + "---|" * 8]
    for r in rows:
        lines.append(f"| {r['model']} | {r['kernels_us']:.1f} | {r['call_us']:.1f} | {r['loader_overhead_us']:.1f} | "
                     f"{r['copying_overhead_us']:.1f} | {r['onnxruntime_run_us']:.1f} | "
                     f"{r['onnxruntime_overhead_us']:.1f} | {r['call_vs_onnxruntime']:.2f}x |")
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind, rest = sys.argv[2], sys.argv[3:]
        result = worker_loader(rest[0], int(rest[1])) if kind == "loader" else \
            worker_onnxruntime(rest[0], rest[1], int(rest[2]))
        print(json.dumps(result))
        return 0
    from ansor_build import zoo

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(zoo.NAMES), help="zoo models, comma-separated ('' for none)")
    parser.add_argument("--onnx", action="append", default=[], metavar="MODEL.onnx", help="a real model (repeatable)")
    parser.add_argument("--target", default=str(REPO / "targets" / "x86_64-avx2.yaml"))
    parser.add_argument("--calls", type=int, default=1500, help="timed calls per runtime per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", help="keep the built packages here (reused by the next run)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ansor-overhead-") as tmp:
        work = Path(args.work or tmp)
        models = [(name, zoo.write_model(name, work / f"{name}.onnx")) for name in filter(None,
                                                                                          args.models.split(","))]
        models += [(Path(path).stem, Path(path)) for path in args.onnx]
        rows = [measure(name, path, Path(args.target), work, args.calls, args.rounds) for name, path in models]
    print(table(rows))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "call_overhead.json").write_text(json.dumps({"target": args.target, "models": rows}, indent=2) + "\n")
    print(f"\nwrote {out / 'call_overhead.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

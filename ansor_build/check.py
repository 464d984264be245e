"""Checking a package against onnxruntime: the package runs in a fresh process, onnxruntime in this one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import AnsorError, ToolError
from .package.layout import LOADER
from .package.manifest import read_manifest
from .runner.run import package_emulator, run_runner

# float32 outputs of TVM and onnxruntime differ by summation order only: |a - b| <= ATOL + RTOL * |b|.
RTOL = 1e-3
ATOL = 1e-4


@dataclass
class CheckResult:
    """How far the package's outputs are from onnxruntime's, and both latencies (milliseconds, medians)."""

    package: Path
    max_abs_diff: float
    max_rel_diff: float
    ok: bool
    latency_ms: float | None
    ort_latency_ms: float | None
    emulator: str | None = None  # the emulator that ran a cross-built package (its latency means nothing)

    def line(self) -> str:
        verdict = "OK" if self.ok else "MISMATCH"
        text = (f"{self.package}: {verdict} vs onnxruntime (max abs diff {self.max_abs_diff:.2e}, "
                f"tolerance {ATOL:g} + {RTOL:g}*|ref|)")
        if self.emulator:
            text += f"; ran bin/ansor_runner under {self.emulator}"
        elif self.latency_ms is not None and self.ort_latency_ms is not None:
            text += (f"; latency {self.latency_ms:.3f} ms, onnxruntime {self.ort_latency_ms:.3f} ms "
                     f"({self.latency_ms / self.ort_latency_ms:.2f}x)")
        return text


def sample_inputs(manifest: dict, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = []
    for sig in manifest["inputs"]:
        if np.issubdtype(np.dtype(sig["dtype"]), np.floating):
            arrays.append(rng.standard_normal(sig["shape"]).astype(sig["dtype"]))
        else:
            arrays.append(rng.integers(0, 4, size=sig["shape"]).astype(sig["dtype"]))
    return arrays


def onnxruntime_session(model_path: Path, threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def reference_outputs(model_path: Path, manifest: dict, arrays: list[np.ndarray], repeat: int = 0):
    """onnxruntime's outputs, and its median latency in ms over `repeat` runs (None when repeat is 0)."""
    from .package.loader import runtime_threads

    threads = int(os.environ.get("TVM_NUM_THREADS") or runtime_threads(manifest))
    session = onnxruntime_session(model_path, threads)  # the same thread count as the package
    feed = {sig["name"]: array for sig, array in zip(manifest["inputs"], arrays)}
    outputs = session.run(None, feed)
    latency = None
    if repeat:
        times = onnxruntime_times(session, feed, repeat)
        latency = sorted(times)[len(times) // 2] * 1e3
    return outputs, latency


def onnxruntime_times(session, feed: dict, repeat: int, warmup: int = 5) -> list[float]:
    """Per-run latencies in seconds of `session` on `feed`, after `warmup` runs."""
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return times


def run_in_fresh_process(package: Path, arrays: list[np.ndarray], repeat: int = 0, command_prefix=()):
    """Run the package's own loader.py in a new Python process; return its outputs and summary."""
    manifest = read_manifest(package)
    with tempfile.TemporaryDirectory(prefix="ansor-check-") as tmp:
        args = []
        for index, (sig, array) in enumerate(zip(manifest["inputs"], arrays)):
            path = Path(tmp) / f"input_{index}.npy"
            np.save(path, array)
            args += ["--input", f"{sig['name']}={path}"]
        out = Path(tmp) / "outputs.npz"
        command = [*command_prefix, sys.executable, str(Path(package) / LOADER), str(package), *args,
                   "--save", str(out), "--repeat", str(repeat), "--json"]
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            raise ToolError("running the package", command, proc.returncode,
                            detail=lines[-1] if lines else "no output")
        with np.load(out) as data:
            outputs = [data[f"output_{i}"] for i in range(len(data.files))]
        return outputs, json.loads(proc.stdout)


def compare(outputs: list[np.ndarray], reference: list[np.ndarray]) -> tuple[float, float, bool]:
    if len(outputs) != len(reference):
        raise AnsorError(f"the package gave {len(outputs)} outputs, onnxruntime {len(reference)}")
    max_abs = max_rel = 0.0
    ok = True
    for got, want in zip(outputs, reference):
        want = np.asarray(want)
        if got.shape != want.shape:
            raise AnsorError(f"output shape {list(got.shape)} differs from onnxruntime's {list(want.shape)}")
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        max_abs = max(max_abs, float(diff.max(initial=0.0)))
        max_rel = max(max_rel, float((diff / (np.abs(want) + 1e-12)).max(initial=0.0)))
        ok = ok and bool(np.all(diff <= ATOL + RTOL * np.abs(want)))
    return max_abs, max_rel, ok


def check_package(package: str | Path, model_path: str | Path, repeat: int = 0, seed: int = 0) -> CheckResult:
    """Run `package` in a fresh process and onnxruntime here on the same random inputs; compare.

    A package for this machine's CPU runs with its Python loader; one for another CPU runs its C++ runner under
    the target's emulator (e.g. qemu-aarch64), as recorded in its manifest.
    """
    package = Path(package)
    manifest = read_manifest(package)
    arrays = sample_inputs(manifest, seed)
    emulator = package_emulator(package, manifest)
    if emulator is None:
        outputs, summary = run_in_fresh_process(package, arrays, repeat)
        latency = summary.get("latency", {}).get("median_ms")
    else:
        outputs, latency = run_runner(package, arrays, emulator=emulator)
    reference, ort_latency = reference_outputs(Path(model_path), manifest, arrays, 0 if emulator else repeat)
    max_abs, max_rel, ok = compare(outputs, reference)
    return CheckResult(package, max_abs, max_rel, ok, latency, ort_latency,
                       emulator=Path(emulator[0]).name if emulator else None)

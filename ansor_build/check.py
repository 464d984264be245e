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

from .errors import AnsorError, InputError, ToolError
from .package import loader
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
                     f"({self.latency_ms / self.ort_latency_ms:.2f}x; numpy in and out, both)")
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


def import_onnxruntime():
    """The onnxruntime module; AnsorError naming the `check` extra when it is not installed (a build-only install)."""
    try:
        import onnxruntime
    except ImportError as err:
        if err.name == "onnxruntime":
            raise AnsorError("check needs onnxruntime: pip install 'ansor-build[check]'") from None
        reason = " ".join(str(err).split())[:300]
        raise AnsorError(f"check needs onnxruntime, which fails to import: {reason}") from None
    return onnxruntime


def onnxruntime_session(model_path: Path, threads: int | None):
    """An onnxruntime CPU session of `model_path`; InputError (one line) when the file is missing or onnxruntime
    cannot load it."""
    ort = import_onnxruntime()
    if not Path(model_path).is_file():
        what = "not a file (expected an ONNX model)" if Path(model_path).exists() else "model file not found"
        raise InputError(f"{model_path}: {what}")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
        raise InputError(f"{model_path}: onnxruntime cannot load it: {_ort_message(err)}") from None


def _ort_message(err: Exception) -> str:
    """onnxruntime's message on one line, without its `[ONNXRuntimeError] : 2 : INVALID_ARGUMENT :` prefix."""
    text = " ".join(str(err).split())
    if text.startswith("[ONNXRuntimeError]"):
        text = text.split(" : ", 3)[-1]
    return text[:300] or type(err).__name__


def _ort_dtype(ort_type: str) -> str:
    """'tensor(float)' -> 'float32', as the manifest spells dtypes."""
    name = ort_type[len("tensor("):-1] if ort_type.startswith("tensor(") else ort_type
    return {"float": "float32", "double": "float64"}.get(name, name)


def _spec_text(name: str, dtype: str, shape) -> str:
    dims = ", ".join(str(d) if isinstance(d, int) else "?" for d in (shape or []))
    return f"{name} {dtype}[{dims}]"


def _fits(ort_shape, shape: list[int]) -> bool:
    """A model's (possibly symbolic or unknown) shape admits the package's static one."""
    if not ort_shape:  # unknown rank (or a scalar): nothing to compare
        return True
    return len(ort_shape) == len(shape) and all(not isinstance(d, int) or d == s for d, s in zip(ort_shape, shape))


def signature_problem(session, manifest: dict) -> str | None:
    """How the inputs or outputs of an onnxruntime `session` differ from the package's (names, count, dtypes, static
    dims), or None. Inputs are compared as a set (fed by name), outputs in order."""
    for kind, args, sigs in (("inputs", session.get_inputs(), manifest["inputs"]),
                             ("outputs", session.get_outputs(), manifest["outputs"])):
        model = [(arg.name, _ort_dtype(arg.type), arg.shape) for arg in args]
        package = [(sig["name"], sig["dtype"], sig["shape"]) for sig in sigs]
        if kind == "inputs":
            model, package = sorted(model, key=lambda m: m[0]), sorted(package, key=lambda p: p[0])
        same = len(model) == len(package) and all(
            m[0] == p[0] and m[1] == p[1] and _fits(m[2], p[2]) for m, p in zip(model, package))
        if not same:
            return (f"{kind} differ: the model's are {_listing(model)}; the package's are {_listing(package)}")
    return None


def _listing(items: list, shown: int = 6) -> str:
    text = ", ".join(_spec_text(*item) for item in items[:shown]) or "none"
    return text + (f" (and {len(items) - shown} more)" if len(items) > shown else "")


def _mismatch(model_path, package, manifest: dict, problem: str) -> AnsorError:
    built = manifest.get("model", {}).get("file") if isinstance(manifest.get("model"), dict) else None
    source = f" (built from {built})" if built else ""
    which = f"package {package}" if package else "the package"
    return AnsorError(f"{model_path} does not match {which}{source}: {problem}; check a package against the model "
                      f"it was built from")


def reference_session(model_path: Path, manifest: dict, package: Path | None = None):
    """An onnxruntime session of `model_path` with the package's thread count, its inputs and outputs checked
    against the package's manifest (AnsorError naming both when they differ)."""
    threads = int(os.environ.get("TVM_NUM_THREADS") or loader.runtime_threads(manifest))
    session = onnxruntime_session(model_path, threads)  # the same thread count as the package
    problem = signature_problem(session, manifest)
    if problem:
        raise _mismatch(model_path, package, manifest, problem)
    return session


def reference_run(session, model_path: Path, manifest: dict, arrays: list[np.ndarray], repeat: int = 0):
    """onnxruntime's outputs on `arrays` (manifest input order), and its median latency in ms over `repeat` runs
    (None when repeat is 0)."""
    feed = {sig["name"]: array for sig, array in zip(manifest["inputs"], arrays)}
    try:
        outputs = session.run(None, feed)
        times = onnxruntime_times(session, feed, repeat) if repeat else []
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types (InvalidArgument, Fail, ...)
        raise AnsorError(f"{model_path}: onnxruntime failed to run it: {_ort_message(err)}") from None
    return outputs, (sorted(times)[len(times) // 2] * 1e3 if times else None)


def reference_outputs(model_path: Path, manifest: dict, arrays: list[np.ndarray], repeat: int = 0):
    """onnxruntime's outputs, and its median latency in ms over `repeat` runs (None when repeat is 0)."""
    return reference_run(reference_session(model_path, manifest), model_path, manifest, arrays, repeat)


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


def compare(outputs: list[np.ndarray], reference: list[np.ndarray],
            names: list[str] | None = None) -> tuple[float, float, bool]:
    """(max abs diff, max rel diff, within tolerance) of the package's `outputs` against onnxruntime's `reference`.

    Empty outputs (a dim of 0) compare equal when both are empty. AnsorError when the count or a shape differs.
    """
    if len(outputs) != len(reference):
        raise AnsorError(f"the package gave {len(outputs)} outputs, onnxruntime {len(reference)}")
    max_abs = max_rel = 0.0
    ok = True
    for index, (got, want) in enumerate(zip(outputs, reference)):
        want = np.asarray(want)
        if got.shape != want.shape:
            name = names[index] if names and index < len(names) else f"output_{index}"
            raise AnsorError(f"output '{name}': shape {list(got.shape)} differs from onnxruntime's "
                             f"{list(want.shape)}")
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
    package, model_path = Path(package), Path(model_path)
    read_manifest(package)  # one-line errors for a missing or foreign directory
    try:  # the checks the package's loader makes, before anything runs
        manifest = loader.read_manifest(package)
        loader.check_files(package, manifest)
    except OSError as err:
        raise InputError(str(err)) from None
    # before the package runs: a model with other inputs or outputs is a mistake to name, not a MISMATCH to measure
    session = reference_session(model_path, manifest, package)
    arrays = sample_inputs(manifest, seed)
    emulator = package_emulator(package, manifest)
    if emulator is None:
        outputs, summary = run_in_fresh_process(package, arrays, repeat)
        latency = summary.get("latency", {}).get("median_ms")
    else:
        outputs, latency = run_runner(package, arrays, emulator=emulator)
    reference, ort_latency = reference_run(session, model_path, manifest, arrays, 0 if emulator else repeat)
    try:
        max_abs, max_rel, ok = compare(outputs, reference, [sig["name"] for sig in manifest["outputs"]])
    except AnsorError as err:
        raise AnsorError(f"{package} against {model_path}: {err}") from None
    return CheckResult(package, max_abs, max_rel, ok, latency, ort_latency,
                       emulator=Path(emulator[0]).name if emulator else None)

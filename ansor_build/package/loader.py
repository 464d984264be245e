"""Load and run an ansor-build package with the TVM runtime.

This file is copied verbatim into every package as `loader.py`; it needs only numpy and the TVM runtime
(`pip install apache-tvm`), not ansor-build. Use it as a library::

    import loader
    model = loader.load("path/to/package")
    outputs = model(x)                      # numpy arrays in, numpy arrays out
    outputs = model.run({"input": x})

or from the command line::

    python loader.py [PACKAGE] [--input NAME=FILE.npy ...] [--save OUT.npz] [--repeat N] [--json]

Without inputs it runs on deterministic inputs: element i of every float input is ((i * 7919) % 1000) / 1000 - 0.5
(the C++ runner uses the same pattern).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# TVM pins each pool thread to one core. On a machine shared with other work (a VM, a phone), a pinned thread waits
# whenever its core is taken, and each parallel kernel waits for its slowest thread: on a 2-core VM a ResNet-style
# call took 47-49 us or 70-96 us pinned, 47-54 us unpinned (the same rounds). Set unless the environment sets it.
UNPINNED = ("TVM_BIND_THREADS", "0")


def default_input(shape, dtype) -> np.ndarray:
    """The deterministic input used when none is given."""
    count = int(np.prod(shape)) if len(shape) else 1
    index = np.arange(count, dtype=np.int64)
    pattern = ((index * 7919) % 1000).astype(np.float64) / 1000.0 - 0.5
    if np.issubdtype(np.dtype(dtype), np.integer):
        pattern = (index * 7919) % 7
    return pattern.astype(dtype).reshape(shape)


def runtime_threads(manifest: dict) -> int:
    """Threads to run with: the target's `runtime.threads` (or `num-cores`), else every CPU of this machine."""
    return manifest.get("runtime", {}).get("threads") or os.cpu_count() or 1


def _preload_cuda_runtime(directory: Path) -> None:
    """Load the package's CUDA runtime (libcudart) before TVM: TVM's CUDA runtime library then finds it by name.

    Without it, `import tvm` loads TVM's CUDA runtime only where a CUDA toolkit's libcudart is on the library path.
    """
    import ctypes

    for lib in sorted((directory / "runtime").glob("libcudart.so*")):
        ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)


def _sm(arch: str) -> tuple[int, int, bool]:
    """("sm_90a" or "compute_86") -> (9, 0, True) / (8, 6, False): major, minor, arch-specific ('a' suffix)."""
    digits = arch.split("_", 1)[1]
    specific = digits.endswith("a")
    digits = digits.rstrip("af")
    return int(digits[:-1]), int(digits[-1]), specific


def gpu_code_problem(device_code: dict, compute_version: str) -> str | None:
    """Why a GPU of `compute_version` ("9.0") cannot run a package's `device_code` (manifest), or None when it can.

    The CUDA driver runs SASS built for sm_XY on GPUs of the same major version and minor >= Y, and compiles PTX
    for compute_XY on any GPU of version >= X.Y ('a' variants: that exact GPU only). Checked before the first
    kernel loads, which otherwise fails with CUDA_ERROR_NO_BINARY_FOR_GPU and no word of what to do.
    """
    gpu = tuple(int(part) for part in compute_version.split(".")[:2])
    sass, ptx = device_code.get("sass", []), device_code.get("ptx", [])
    sass_versions = [_sm(arch) for arch in sass]
    if any(major == gpu[0] and (minor == gpu[1] or (minor < gpu[1] and not specific))
           for major, minor, specific in sass_versions):
        return None
    if any((major, minor) == gpu or ((major, minor) < gpu and not specific)
           for major, minor, specific in map(_sm, ptx)):
        return None
    here = f"sm_{gpu[0]}{gpu[1]}"
    carried = f"SASS for {', '.join(sass) or 'no arch'}" + (f" and PTX for {', '.join(ptx)}" if ptx else ", no PTX")
    fix = f"rebuild it for this GPU (a target with `tvm: {{arch: {here}}}`, as ansor-build's cuda-{here} preset)"
    if not ptx and all((major, minor) < gpu for major, minor, _ in sass_versions):
        fix += ", or keep PTX (`runtime: {ptx: true}`) so that newer GPUs compile it when it loads"
    return f"this GPU is {here} and the package's device code cannot run on it ({carried}): {fix}"


class Package:
    """A loaded package: call it with numpy arrays (positional, in manifest order) or a dict by input name."""

    def __init__(self, directory: Path, device: str | None = None):
        self.directory = Path(directory).resolve()
        self.manifest = json.loads((self.directory / "manifest.json").read_text(encoding="utf-8"))
        if "TVM_NUM_THREADS" not in os.environ:
            # Read once, when TVM's thread pool starts. Without it TVM uses half the CPUs on x86 (it assumes
            # hyper-threads), which is one thread on a 2-core machine.
            os.environ["TVM_NUM_THREADS"] = str(runtime_threads(self.manifest))
        os.environ.setdefault(*UNPINNED)
        kind = device or self.manifest.get("target", {}).get("device", "cpu")
        if kind == "cuda":
            _preload_cuda_runtime(self.directory)
        import tvm
        from tvm.runtime.vm import VirtualMachine

        self._tvm = tvm
        if kind == "cuda" and tvm.get_global_func("ffi.Module.load_from_bytes.cuda", allow_missing=True) is None:
            raise OSError("this GPU package needs TVM's CUDA runtime, which did not load: it needs an NVIDIA GPU "
                          "driver (libcuda.so.1) on this machine")
        self.device = tvm.cuda(0) if kind == "cuda" else tvm.cpu(0)
        if kind == "cuda":
            self._check_gpu()
        self.module = tvm.runtime.load_module(str(self.directory / "model.so"))  # the VM executable
        self._vm = VirtualMachine(self.module, self.device)
        self._main = self._vm["main"]
        self.inputs = self.manifest["inputs"]
        self.outputs = self.manifest["outputs"]

    def _check_gpu(self) -> None:
        if not self.device.exist:
            raise OSError(f"{self.directory}: no CUDA GPU found (the NVIDIA driver loaded, but it lists no device 0)")
        code = self.manifest.get("device_code")
        problem = code and gpu_code_problem(code, self.device.compute_version)
        if problem:
            raise OSError(f"{self.directory}: {self.device.device_name}: {problem}")

    def _to_device(self, array: np.ndarray, sig: dict):
        array = np.ascontiguousarray(array)
        if list(array.shape) != list(sig["shape"]) or str(array.dtype) != sig["dtype"]:
            raise ValueError(f"input '{sig['name']}': expected {sig['dtype']}{sig['shape']}, "
                             f"got {array.dtype}{list(array.shape)}")
        return self._tvm.runtime.tensor(array, self.device)

    def prepare(self, *arrays, **named):
        """Copy inputs to the device once (for timing loops)."""
        if named:
            missing = [sig["name"] for sig in self.inputs if sig["name"] not in named]
            if missing or arrays:
                raise ValueError(f"give every input by name ({', '.join(s['name'] for s in self.inputs)}); "
                                 f"missing: {', '.join(missing)}")
            arrays = tuple(named[sig["name"]] for sig in self.inputs)
        if len(arrays) != len(self.inputs):
            raise ValueError(f"expected {len(self.inputs)} inputs, got {len(arrays)}")
        return [self._to_device(a, sig) for a, sig in zip(arrays, self.inputs)]

    def run_prepared(self, tensors) -> list:
        result = self._main(*tensors)
        return [result] if hasattr(result, "numpy") else list(result)  # one tensor, or a tuple of them

    def __call__(self, *arrays, **named) -> list[np.ndarray]:
        return [out.numpy() for out in self.run_prepared(self.prepare(*arrays, **named))]

    def run(self, inputs: dict) -> list[np.ndarray]:
        return self(**inputs)

    def default_inputs(self) -> list[np.ndarray]:
        return [default_input(sig["shape"], sig["dtype"]) for sig in self.inputs]

    def benchmark(self, arrays, warmup: int = 5, repeat: int = 50) -> list[float]:
        """Per-run latencies in seconds (outputs stay on the device; a device sync ends each run)."""
        tensors = self.prepare(*arrays)
        for _ in range(warmup):
            self.run_prepared(tensors)
        self.device.sync()
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            self.run_prepared(tensors)
            self.device.sync()
            times.append(time.perf_counter() - start)
        return times


def load(directory: str | Path = HERE, device: str | None = None) -> Package:
    """Load the package in `directory` (default: the package this file belongs to)."""
    return Package(Path(directory), device)


def _read_inputs(package: Package, items: list[str]) -> list[np.ndarray]:
    if not items:
        return package.default_inputs()
    by_name = {}
    for position, item in enumerate(items):
        name, sep, path = item.partition("=")
        if not sep:
            name, path = package.inputs[position]["name"] if position < len(package.inputs) else str(position), item
        by_name[name] = np.load(path)
    unknown = [name for name in by_name if name not in {sig["name"] for sig in package.inputs}]
    if unknown:
        raise ValueError(f"unknown input '{unknown[0]}' (inputs: {', '.join(s['name'] for s in package.inputs)})")
    return [by_name[sig["name"]] if sig["name"] in by_name else default_input(sig["shape"], sig["dtype"])
            for sig in package.inputs]


def summary(package: Package, outputs: list[np.ndarray], times: list[float]) -> dict:
    """Outputs' statistics and latency percentiles, as printed by `main` (and `ansor-build run`)."""
    rows = []
    for sig, out in zip(package.outputs, outputs):
        rows.append({"name": sig["name"], "shape": list(out.shape), "dtype": str(out.dtype),
                     "min": float(out.min()), "max": float(out.max()), "mean": float(out.astype(np.float64).mean())})
    ms = sorted(t * 1e3 for t in times)
    latency = {"median_ms": ms[len(ms) // 2], "min_ms": ms[0], "repeat": len(ms)} if ms else {}
    return {"outputs": rows, "latency": latency, "threads": os.environ.get("TVM_NUM_THREADS")}


def format_summary(result: dict) -> str:
    lines = [f"output {r['name']}: {r['dtype']}{r['shape']} min={r['min']:.6g} max={r['max']:.6g} "
             f"mean={r['mean']:.6g}" for r in result["outputs"]]
    if result["latency"]:
        lat = result["latency"]
        lines.append(f"latency: median {lat['median_ms']:.3f} ms, min {lat['min_ms']:.3f} ms over {lat['repeat']} runs"
                     f" ({result['threads'] or 'default'} threads)")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Run an ansor-build package.")
    parser.add_argument("package", nargs="?", default=str(HERE), help="package directory (default: this one)")
    parser.add_argument("--input", action="append", default=[], metavar="[NAME=]FILE.npy")
    parser.add_argument("--save", metavar="OUT.npz", help="write the outputs as output_0, output_1, ...")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--device", choices=("cpu", "cuda"))
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    try:
        package = load(args.package, args.device)
        arrays = _read_inputs(package, args.input)
        outputs = package(*arrays)
        times = package.benchmark(arrays, args.warmup, args.repeat) if args.repeat > 0 else []
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.save:
        np.savez(args.save, **{f"output_{i}": out for i, out in enumerate(outputs)})
    result = summary(package, outputs, times)
    print(json.dumps(result, indent=2) if args.json else format_summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

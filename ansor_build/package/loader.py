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
import hashlib
import json
import os
import stat
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# TVM pins each pool thread to one core. On a machine shared with other work (a VM, a phone), a pinned thread waits
# whenever its core is taken, and each parallel kernel waits for its slowest thread: on a 2-core VM a ResNet-style
# call took 47-49 us or 70-96 us pinned, 47-54 us unpinned (the same rounds). Set unless the environment sets it.
UNPINNED = ("TVM_BIND_THREADS", "0")
MODEL_SO = "model.so"
# Files checked against the manifest before TVM maps them: a truncated model.so (or runtime library) is mapped and
# read past its end, which kills the process with SIGBUS and no message. model.so is also hashed: sha256 ran at
# 1.0-1.4 GB/s on a 2-core x86 VM (75 ms for 100 MB, 0.2 ms for a small MLP's 160 KB), against 0.75-2.5 s to
# import TVM; the runtime libraries (6 MB, not even loaded by this loader on a CPU) get a size check only.
HASHED = (MODEL_SO,)
# TVM allocates tensors on 64-byte boundaries (kAllocAlignment) and its kernels may assume it (aligned vector loads).
ALIGNMENT = 64


def default_input(shape, dtype) -> np.ndarray:
    """The deterministic input used when none is given."""
    count = int(np.prod(shape)) if len(shape) else 1
    index = np.arange(count, dtype=np.int64)
    pattern = ((index * 7919) % 1000).astype(np.float64) / 1000.0 - 0.5
    if np.issubdtype(np.dtype(dtype), np.integer):
        pattern = (index * 7919) % 7
    return pattern.astype(dtype).reshape(shape)


class PackageError(OSError):
    """A package that cannot be used as it is (a file missing, truncated or modified, a damaged manifest)."""


def read_manifest(directory: str | Path) -> dict:
    """The package's manifest.json, with its `inputs` and `outputs` checked; PackageError (one line) otherwise."""
    path = Path(directory) / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PackageError(f"{directory}: not a package (manifest.json not found)") from None
    except OSError as err:
        raise PackageError(f"{path}: cannot read: {err.strerror or err}") from None
    except (ValueError, RecursionError) as err:  # invalid JSON or UTF-8, nesting too deep
        raise PackageError(f"{path}: not valid JSON ({str(err).splitlines()[0][:200]}); rebuild the package") \
            from None
    if not isinstance(manifest, dict):
        raise PackageError(f"{path}: expected a JSON object; rebuild the package")
    for key in ("inputs", "outputs"):
        sigs = manifest.get(key)
        if not isinstance(sigs, list) or not all(_signature(sig) for sig in sigs):
            raise PackageError(f"{path}: {key}: expected a list of {{name, shape, dtype}}; rebuild the package")
    return manifest


def _signature(sig) -> bool:
    return (isinstance(sig, dict) and isinstance(sig.get("name"), str) and isinstance(sig.get("dtype"), str)
            and isinstance(sig.get("shape"), list) and all(type(d) is int and d >= 0 for d in sig["shape"]))


def file_problem(path: Path, entry: dict, hashed: bool = False) -> str | None:
    """How the file at `path` differs from its manifest `entry` ({sha256, size}), or None when it does not.

    Only the size is compared unless `hashed` (then the sha256 too, read a megabyte at a time).
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return f"missing (the manifest lists {entry['size']} bytes)"
    except OSError as err:
        return f"cannot read it: {err.strerror}"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_size != entry["size"]:
        how = "truncated" if info.st_size < entry["size"] else "larger than built"
        return f"{how} ({info.st_size} bytes, manifest says {entry['size']})"
    if hashed:
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as file:
                for block in iter(lambda: file.read(1 << 20), b""):
                    digest.update(block)
        except OSError as err:
            return f"cannot read it: {err.strerror}"
        if digest.hexdigest() != entry["sha256"]:
            return "modified (same size, but its sha256 is not the manifest's)"
    return None


def check_files(directory: str | Path, manifest: dict) -> None:
    """Raise PackageError when model.so or a runtime library differs from what the manifest lists.

    Checks only what the manifest lists (a hand-made manifest without `files` checks nothing). It proves the files
    are the ones built, cheaply, before they are loaded; `ansor-build verify` checks every file.
    """
    files = manifest.get("files")
    if not isinstance(files, dict):
        return
    for name in sorted(files):
        entry = files[name]
        if name != MODEL_SO and not name.startswith("runtime/"):
            continue
        if not (isinstance(entry, dict) and type(entry.get("size")) is int and isinstance(entry.get("sha256"), str)):
            raise PackageError(f"{Path(directory) / 'manifest.json'}: files: '{name}': expected {{sha256, size}}; "
                               f"rebuild the package")
        problem = file_problem(Path(directory) / name, entry, hashed=name in HASHED)
        if problem:
            raise PackageError(f"{Path(directory) / name}: {problem}; rebuild the package or run "
                               f"`ansor-build verify {directory}`")


def runtime_threads(manifest: dict) -> int:
    """Threads to run with: the target's `runtime.threads` (or `num-cores`), else every CPU of this machine."""
    runtime = manifest.get("runtime")
    threads = runtime.get("threads") if isinstance(runtime, dict) else None
    return threads if type(threads) is int and threads > 0 else os.cpu_count() or 1


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
        self.manifest = read_manifest(directory)
        check_files(directory, self.manifest)  # before TVM maps model.so: a truncated one dies of SIGBUS
        if "TVM_NUM_THREADS" not in os.environ:
            # Read once, when TVM's thread pool starts. Without it TVM uses half the CPUs on x86 (it assumes
            # hyper-threads), which is one thread on a 2-core machine.
            os.environ["TVM_NUM_THREADS"] = str(runtime_threads(self.manifest))
        os.environ.setdefault(*UNPINNED)
        target = self.manifest.get("target")
        kind = device or (target.get("device") if isinstance(target, dict) else None) or "cpu"
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
        try:
            self.module = tvm.runtime.load_module(str(self.directory / MODEL_SO))  # the VM executable
            self._vm = VirtualMachine(self.module, self.device)
        except Exception as err:  # noqa: BLE001 - TVM raises many types; its first line says what failed
            raise PackageError(f"{Path(directory) / MODEL_SO}: TVM cannot load it: {first_line(err)}") from None
        self._main = self._vm["main"]
        self._cuda = kind == "cuda"
        import tvm_ffi  # TVM's own FFI (a dependency of apache-tvm)

        self._from_dlpack = tvm_ffi.from_dlpack
        self.inputs = self.manifest["inputs"]
        self.outputs = self.manifest["outputs"]
        self._slots = [_Slot(sig) for sig in self.inputs]
        self._outputs = _Outputs()

    def _check_gpu(self) -> None:
        if not self.device.exist:
            raise OSError(f"{self.directory}: no CUDA GPU found (the NVIDIA driver loaded, but it lists no device 0)")
        code = self.manifest.get("device_code")
        problem = code and gpu_code_problem(code, self.device.compute_version)
        if problem:
            raise OSError(f"{self.directory}: {self.device.device_name}: {problem}")

    def _tensor(self, array, index: int, reuse: bool = True):
        """Input `index`, checked against the manifest, as a TVM tensor. On a CPU: the caller's array itself when it
        is C-contiguous, 64-byte aligned (TVM's kernels may use aligned vector loads) and writeable, else an aligned
        copy (with `reuse`, in the input's own buffer, made once and reused by every call). On a GPU: a device copy.
        """
        slot = self._slots[index]
        if type(array) is not np.ndarray:  # a list or a scalar has no dtype of its own: it takes the input's
            array = np.asarray(array) if hasattr(array, "dtype") else np.asarray(array, dtype=slot.dtype)
        if array.shape != slot.shape or array.dtype != slot.dtype:
            raise ValueError(f"input '{slot.name}': expected {slot.spec}, got {array.dtype}{list(array.shape)}")
        if self._cuda:
            return self._tvm.runtime.tensor(np.ascontiguousarray(array), self.device)
        flags = array.flags  # DLPack cannot export a read-only array; TVM's kernels read a C-contiguous one
        if flags.c_contiguous and flags.writeable:
            tensor = self._from_dlpack(array, require_alignment=0)  # checked here: TVM's refusal costs ~40 us
            if tensor.data_ptr() % ALIGNMENT == 0:
                return tensor
        return self._from_dlpack(slot.stage(array) if reuse else aligned_copy(array), require_alignment=ALIGNMENT)

    def prepare(self, *arrays, **named):
        """The inputs as TVM tensors (on a GPU: copied to the device once, for timing loops)."""
        # prepared tensors outlive the call: none of them is in a staging buffer, which the next call reuses
        return [self._tensor(array, index, reuse=False)
                for index, array in enumerate(self._arrays(arrays, named))]

    def run_prepared(self, tensors) -> list:
        """Run on prepared tensors; the outputs stay TVM tensors (on the device)."""
        result = self._main(*tensors)
        return [result] if hasattr(result, "numpy") else list(result)  # one tensor, or a tuple of them

    def __call__(self, *arrays, out=None, **named) -> list[np.ndarray]:
        """Run on numpy arrays (positional in manifest order, or by input name); numpy arrays out.

        On a CPU, inputs are read where they are (see `_tensor`) and outputs are the VM's own fresh buffers, handed
        over without a copy (see `_Outputs`). With `out=[arrays]` the outputs are written into the caller's arrays
        (the manifest's shapes and dtypes) and those are returned: no allocation per call. A Package runs one call
        at a time (not from two threads at once: the VM and the staging buffers are its own).
        """
        tensors = [self._tensor(array, index) for index, array in enumerate(self._arrays(arrays, named))]
        results = self.run_prepared(tensors)
        if out is not None:
            return self._outputs.into(results, out, self.outputs)
        if self._cuda:
            return [result.numpy() for result in results]
        return self._outputs.arrays(results, tensors)

    def _arrays(self, arrays: tuple, named: dict) -> tuple:
        """The inputs in manifest order, given by position or (all of them) by name."""
        if named:
            missing = [sig["name"] for sig in self.inputs if sig["name"] not in named]
            if missing or arrays:
                raise ValueError(f"give every input by name ({', '.join(s['name'] for s in self.inputs)}); "
                                 f"missing: {', '.join(missing)}")
            arrays = tuple(named[sig["name"]] for sig in self.inputs)
        if len(arrays) != len(self.inputs):
            raise ValueError(f"expected {len(self.inputs)} inputs, got {len(arrays)}")
        return arrays

    def run(self, inputs: dict) -> list[np.ndarray]:
        return self(**inputs)

    def default_inputs(self) -> list[np.ndarray]:
        return [default_input(sig["shape"], sig["dtype"]) for sig in self.inputs]

    def benchmark(self, arrays, warmup: int = 5, repeat: int = 50, kernels: bool = False) -> list[float]:
        """Per-call latencies in seconds of what users run: numpy arrays in, numpy arrays out (as onnxruntime's
        `session.run` is timed). With `kernels`, of the model alone: inputs prepared once, outputs left on the
        device, a device sync ending each run."""
        if kernels:
            tensors = self.prepare(*arrays)
            call = lambda: (self.run_prepared(tensors), self.device.sync())  # noqa: E731
        else:
            call = lambda: self(*arrays)  # noqa: E731
        for _ in range(warmup):
            call()
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        return times


class _Slot:
    """One input's signature, checked in a few microseconds, and its 64-byte aligned staging buffer for arrays
    that cannot be handed to TVM as they are (misaligned, strided or read-only), allocated on first need."""

    def __init__(self, sig: dict):
        self.name = sig["name"]
        self.shape = tuple(sig["shape"])
        self.spec = f"{sig['dtype']}{list(sig['shape'])}"
        try:
            self.dtype = np.dtype(sig["dtype"])
        except TypeError:  # a dtype numpy does not know (bfloat16 without ml_dtypes): no array can match it
            self.dtype = None
        self.buffer = None

    def stage(self, array: np.ndarray) -> np.ndarray:
        if self.buffer is None:
            self.buffer = aligned_empty(self.shape, self.dtype)
        np.copyto(self.buffer, array)
        return self.buffer


def aligned_empty(shape, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an ALIGNMENT-byte boundary."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape)) if len(shape) else 1
    raw = np.empty(count * dtype.itemsize + ALIGNMENT, dtype=np.uint8)
    start = (-raw.ctypes.data) % ALIGNMENT
    return raw[start:start + count * dtype.itemsize].view(dtype).reshape(shape)


def aligned_copy(array: np.ndarray) -> np.ndarray:
    copy = aligned_empty(array.shape, array.dtype)
    np.copyto(copy, array)
    return copy


HAND_OVER, COPY, TO_NUMPY = 0, 1, 2  # how `_Outputs` returns an output


class _Outputs:
    """Outputs handed to the caller without a copy where that is safe.

    A Relax function may return memory that outlives the call: a constant of the model (the same buffer every
    call), an input or a view of one (an Identity or Reshape output), or one tensor in two places. Those are
    copied (the first place of a tensor given twice is not); the others are buffers the VM allocated for this
    call, which the returned array then owns (numpy's DLPack import). Which output is which is learnt on the first
    two calls (copied meanwhile): with the first call's outputs still held, a fresh buffer cannot come back at the
    same address, so an output at the same address is persistent, and one that overlaps an input is a view of it.
    That holds for every later call because a model's code is straight-line (no branch returns a constant or an
    input in some calls only). A dtype numpy cannot import (bfloat16) is copied by TVM.
    """

    def __init__(self):
        self.modes = None  # per output: HAND_OVER, COPY or TO_NUMPY, once learnt
        self._first = None  # the first call's output tensors and addresses, held until the second call

    def arrays(self, results, tensors) -> list[np.ndarray]:
        modes = self.modes
        if modes is None:
            return self._learn(results, tensors)
        return [np.from_dlpack(result) if mode == HAND_OVER else
                np.from_dlpack(result).copy() if mode == COPY else result.numpy()
                for result, mode in zip(results, modes)]

    def _learn(self, results, tensors) -> list[np.ndarray]:
        views = []
        for result in results:
            try:
                views.append(np.from_dlpack(result))
            except Exception:  # noqa: BLE001 - a dtype numpy cannot take by DLPack (bfloat16)
                views.append(None)
        addresses = [None if view is None else view.__array_interface__["data"][0] for view in views]
        if self._first is None:
            self._first = (results, addresses)
        else:
            inputs = [np.from_dlpack(tensor) for tensor in tensors]
            self.modes = [TO_NUMPY if view is None else
                          COPY if (address == self._first[1][index] or address in addresses[:index]
                                   or any(np.may_share_memory(view, array) for array in inputs)) else HAND_OVER
                          for index, (view, address) in enumerate(zip(views, addresses))]
            self._first = None
        return [result.numpy() if view is None else view.copy() for result, view in zip(results, views)]

    @staticmethod
    def into(results, out, sigs) -> list[np.ndarray]:
        if len(out) != len(results):
            raise ValueError(f"out: expected {len(results)} arrays (one per output), got {len(out)}")
        for index, (result, target) in enumerate(zip(results, out)):
            if not isinstance(target, np.ndarray) or list(target.shape) != list(result.shape) or \
                    str(target.dtype) != str(result.dtype) or not target.flags.writeable:
                name = sigs[index]["name"] if index < len(sigs) else f"output_{index}"
                raise ValueError(f"out[{index}] (output '{name}'): expected a writeable numpy array of "
                                 f"{result.dtype}{list(result.shape)}")
            try:
                np.copyto(target, np.from_dlpack(result))
            except Exception:  # noqa: BLE001 - a GPU tensor or a dtype numpy cannot import by DLPack
                np.copyto(target, result.numpy())
        return list(out)


def load(directory: str | Path = HERE, device: str | None = None) -> Package:
    """Load the package in `directory` (default: the package this file belongs to)."""
    return Package(Path(directory), device)


def _spec(sig: dict) -> str:
    return f"{sig['dtype']}{list(sig['shape'])}"


def first_line(err: BaseException) -> str:
    """The first line of an error's message (TVM's messages go on with a C++ traceback), at most 300 characters."""
    lines = str(err).strip().splitlines()
    return (lines[0] if lines else type(err).__name__)[:300]


def _same_dtype(dtype: np.dtype, name: str) -> bool:
    try:
        return dtype == np.dtype(name)
    except TypeError:  # a dtype numpy does not know (bfloat16 without ml_dtypes)
        return str(dtype) == name


def read_npy(path: str | Path, sig: dict) -> np.ndarray:
    """The array in .npy file `path` for input `sig`; ValueError (one line naming the file, the input and what it
    takes) unless it is a .npy file of exactly that shape and dtype (any byte order).

    The header is checked before the data is read: a file that declares another shape is never loaded.
    """
    takes = f"input '{sig['name']}' takes {_spec(sig)}"
    try:
        with open(path, "rb") as file:
            magic = file.read(6)
            if magic != b"\x93NUMPY":
                what = "a .npz archive" if magic.startswith(b"PK") else "not a .npy file"
                raise ValueError(f"{path}: {what} ({takes}, saved with numpy.save)")
            file.seek(0)
            try:
                version = np.lib.format.read_magic(file)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(file)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(file)
                else:
                    raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported")
            except ValueError as err:
                raise ValueError(f"{path}: damaged .npy header ({first_line(err)}); {takes}") from None
            if list(shape) != list(sig["shape"]) or not _same_dtype(dtype.newbyteorder("="), sig["dtype"]):
                raise ValueError(f"{path}: holds {dtype.newbyteorder('=')}{list(shape)}, but {takes}")
            file.seek(0)
            try:
                array = np.lib.format.read_array(file, allow_pickle=False)
            except ValueError as err:
                raise ValueError(f"{path}: damaged .npy file ({first_line(err)}); {takes}") from None
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found ({takes} as a .npy file)") from None
    except OSError as err:
        raise ValueError(f"{path}: cannot read it: {err.strerror or err} ({takes} as a .npy file)") from None
    return array.astype(array.dtype.newbyteorder("="), copy=False)


def read_inputs(inputs: list[dict], items: list[str]) -> list[np.ndarray]:
    """The arrays of `--input [NAME=]FILE.npy` items for the manifest's `inputs`, in manifest order.

    An item without a name is the input at its position; inputs not given get `default_input`. Raises ValueError
    (one line naming the item and what is allowed) for an unknown or repeated name, a missing, unreadable or
    non-.npy file, or an array of another shape or dtype.
    """
    names = [sig["name"] for sig in inputs]
    listing = ", ".join(f"{sig['name']} {_spec(sig)}" for sig in inputs) or "none"
    files: dict[str, str] = {}
    for position, item in enumerate(items):
        name, sep, path = item.partition("=")
        if not sep:
            if position >= len(inputs):
                raise ValueError(f"--input {item}: the package takes {len(inputs)} input(s) ({listing}); "
                                 f"name the input as NAME=FILE.npy")
            name, path = names[position], item
        if name not in names:
            raise ValueError(f"--input {item}: unknown input '{name}' (the package's inputs: {listing})")
        if name in files:
            raise ValueError(f"--input {item}: input '{name}' is given twice")
        files[name] = path
    return [read_npy(files[sig["name"]], sig) if sig["name"] in files else default_input(sig["shape"], sig["dtype"])
            for sig in inputs]


def summary(package: Package, outputs: list[np.ndarray], times: list[float]) -> dict:
    """Outputs' statistics and latency percentiles, as printed by `main` (and `ansor-build run`).

    An empty output (a dim of 0, as NonMaxSuppression selecting no box) has min, max and mean None.
    """
    rows = []
    for index, out in enumerate(outputs):
        name = package.outputs[index]["name"] if index < len(package.outputs) else f"output_{index}"
        empty = out.size == 0
        rows.append({"name": name, "shape": list(out.shape), "dtype": str(out.dtype),
                     "min": None if empty else float(out.min()), "max": None if empty else float(out.max()),
                     "mean": None if empty else float(out.astype(np.float64).mean())})
    ms = sorted(t * 1e3 for t in times)
    latency = {"median_ms": ms[len(ms) // 2], "min_ms": ms[0], "repeat": len(ms)} if ms else {}
    return {"outputs": rows, "latency": latency, "threads": os.environ.get("TVM_NUM_THREADS")}


def format_summary(result: dict) -> str:
    lines = [f"output {r['name']}: {r['dtype']}{r['shape']} " +
             ("empty" if r["min"] is None else f"min={r['min']:.6g} max={r['max']:.6g} mean={r['mean']:.6g}")
             for r in result["outputs"]]
    if result["latency"]:
        lat = result["latency"]
        lines.append(f"latency: median {lat['median_ms']:.3f} ms, min {lat['min_ms']:.3f} ms over {lat['repeat']} calls"
                     f" (numpy in, numpy out; {result['threads'] or 'default'} threads)")
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
    try:  # errors of ours: one line naming the file
        arrays = read_inputs(read_manifest(args.package)["inputs"], args.input)
        package = load(args.package, args.device)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    try:
        outputs = package(*arrays)
        times = package.benchmark(arrays, args.warmup, args.repeat) if args.repeat > 0 else []
        if args.save:
            np.savez(args.save, **{f"output_{i}": out for i, out in enumerate(outputs)})
    except OSError as err:
        print(f"error: {args.save}: cannot write the outputs: {err.strerror or err}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - TVM's errors while running the model are of many types
        print(f"error: {args.package}: running the model failed: {first_line(err)}", file=sys.stderr)
        return 1
    result = summary(package, outputs, times)
    print(json.dumps(result, indent=2) if args.json else format_summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

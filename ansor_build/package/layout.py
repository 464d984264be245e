"""The files of a package directory, known before building (SCons declares them as the build's outputs)."""

from __future__ import annotations

MANIFEST = "manifest.json"
MODEL_SO = "model.so"
LOADER = "loader.py"
README = "README.md"
RUNNER_BIN = "bin/ansor_runner"
RUNTIME_DIR = "runtime"
FORMAT_VERSION = 1

# TVM runtime libraries per device kind; names inside runtime/. libtvm_runtime_cuda.so links libcudart.so.13
# (found beside it: its RUNPATH is $ORIGIN) and the driver's libcuda.so.1 (the device's).
RUNTIME_LIBS = {
    "cpu": ("libtvm_runtime.so", "libtvm_ffi.so"),
    "cuda": ("libtvm_runtime.so", "libtvm_ffi.so", "libtvm_runtime_cuda.so", "libcudart.so.13"),
}


def runtime_files(target) -> list[str]:
    if target.runtime_libs == "none":
        return []
    return [f"{RUNTIME_DIR}/{lib}" for lib in RUNTIME_LIBS[target.device]]


def device_sources() -> list:
    """The runner's C++ sources, shipped in src/ so the device can rebuild the runner."""
    from ..runner import runner_sources

    return [path for path in runner_sources() if path.suffix in (".cc", ".h")]


def runner_files(target) -> list[str]:
    """The C++ runner: its sources always (the device may rebuild it), the binary when the target builds it."""
    files = [f"src/{path.name}" for path in device_sources()]
    if target.build_runner and target.runtime_libs != "none":
        files.append(RUNNER_BIN)
    return files


def package_files(target) -> list[str]:
    """Every file of a package for `target`, relative to the package directory, sorted; manifest.json first."""
    files = [MODEL_SO, LOADER, README, *runtime_files(target), *runner_files(target)]
    return [MANIFEST, *sorted(files)]

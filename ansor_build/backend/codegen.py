"""Compiling a fused Relax module for a target and exporting the shared library (cross-compiling when needed)."""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path

from ..errors import AnsorError, ToolError
from . import cuda, import_tvm, package_runtime, prepack, winograd_schedule

# TVM relax backend package per target kind.
_BACKENDS = {"llvm": "cpu_generic", "cuda": "cuda"}


VM_MODES = ("compiled", "bytecode")


def compile_fused(fused, target, database=None, vm: str = "bytecode"):
    """Compile a fused module into a Relax VM executable, applying the database's best schedules when given.

    Records must be applied after FuseOps (apache/tvm#19385), so they are applied here, to the fused module;
    weights whose layout the applied schedules rewrite are then packed at build time (`prepack`).
    `vm`: "bytecode" (the VM interprets its instructions; its profiler sees every kernel) or "compiled" (the
    instructions become a function compiled with the kernels, no interpreter loop: a MobileNet-style call of 45
    instructions went from 17.4 to 16.2 us on a 2-core x86 host).
    """
    if vm not in VM_MODES:
        raise ValueError(f"vm mode {vm!r} (expected one of {VM_MODES})")
    tvm = import_tvm()
    from tvm import relax

    backend = importlib.import_module(f"tvm.relax.backend.{_BACKENDS[target.kind.name]}.pipeline")
    mod = fused
    if database is not None:
        with target, database:
            mod = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
            mod = tvm.transform.Sequential(prepack.after_applying(target))(mod)
    passes = [*_default_schedules(target), *backend.dataflow_lower_passes(target), *backend.finalize_passes(target)]
    lower = tvm.transform.Sequential(passes)

    @tvm.transform.module_pass(opt_level=0)
    def _lower(mod, _ctx):
        with target:
            return lower(mod)

    with cuda.source_kept(target):  # GPU kernels stay CUDA C here; export_library compiles them with nvcc
        return relax.build(mod, target, relax_pipeline=_lower, exec_mode=vm)


def _default_schedules(target) -> list:
    """Winograd kernels without a record get their default decisions on CPU targets (unscheduled, their stages would
    run one scalar loop nest after another). GPU kernels need a thread binding to run at all: dlight schedules every
    subgraph the database did not."""
    if target.kind.name != "cuda":
        return [winograd_schedule.default_schedules()]
    from tvm.s_tir import dlight as dl

    return [dl.ApplyDefaultSchedule(dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(), dl.gpu.GeneralReduction(),
                                    dl.gpu.Fallback())]


def link_options(flags) -> list[str]:
    """Options of every shared library linked for a target: packages' model.so and tuning candidates alike."""
    return ["-O2", *flags]


def _fcompile(cxx: str, flags, runtime_dir: Path | None):
    """(TVM's fcompile for the target's compiler, its options); with `runtime_dir` (CPU libraries), the package's
    runtime (thread pool, workspace allocator) is linked in (its version script written there)."""
    from tvm.support import cc

    files, runtime_options = package_runtime.link_inputs(runtime_dir) if runtime_dir is not None else ([], [])
    options = link_options(flags) + runtime_options
    return cc.cross_compiler(cxx, options=options, add_files=files), options


def export_candidate(cxx: str, flags: tuple[str, ...], runtime: bool, mod) -> str:
    """`f_export` of the tuning builder's workers: link a built candidate into a shared library with the target's
    compiler (a device loads .so files; TVM's default .tar would need a compiler on the device), with the package's
    runtime (thread pool, workspace allocator) when `runtime` (CPU targets), so that candidates run as packages do."""
    directory = Path(tempfile.mkdtemp(prefix="ansor-candidate-"))
    path = directory / "candidate.so"
    mod.export_library(str(path), fcompile=_fcompile(cxx, flags, directory if runtime else None)[0])
    return str(path)


def export_library(executable, path: Path, cxx: str, flags: list[str], log_path: Path, *,
                   device_code: "cuda.DeviceCode | None" = None, target=None) -> None:
    """Link the executable into `path` with the target's compiler; a failure keeps the command and log.

    CPU libraries get the package's runtime (`package_runtime`). With `device_code` (GPU targets; `target` is the TVM
    target), the kernels are compiled to device code by nvcc and embedded instead of their CUDA source.
    """
    import_tvm()
    extra = {}
    if device_code is not None:
        extra["fpack_imports"] = cuda.pack_imports_with_device_code(target, device_code)
    with tempfile.TemporaryDirectory(prefix="ansor-link-") as tmp:
        fcompile, options = _fcompile(cxx, flags, Path(tmp) if device_code is None else None)
        try:
            executable.export_library(str(path), fcompile=fcompile, **extra)
        except AnsorError:
            raise
        except Exception as err:  # noqa: BLE001 - TVM wraps compiler failures in RuntimeError/TVMError
            log_path.write_text(str(err), encoding="utf-8")
            lines = [line for line in str(err).splitlines() if line.strip()]
            detail = next((line for line in lines if "error" in line.lower()), lines[-1] if lines else "")
            raise ToolError("linking model.so", [cxx, *options, "-shared", "-o", str(path)], None, str(log_path),
                            detail=detail.strip()[:300]) from err

"""Building one package: model + target -> compiled, packaged, self-describing directory."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import backend, toolchain
from .backend import codegen, cuda, frontend, partition, records
from .model import TensorSig, load_model
from .package import layout
from .package.manifest import write_manifest
from .package.readme import package_readme
from .package.requirements import package_requirements
from .package.runtime_libs import runtime_libraries
from .package.staging import check_replaceable, no_empty_directory_on_failure, staged_directory
from .target import load_target
from .target.llvm import check_llvm_names
from .tuning import threads as thread_choice
from .tuning.driver import (check_records_out, read_records_file, records_file_threads, tune_and_select,
                            write_records_file)
from .tuning.options import TuningOptions
from .tuning.store import record_latency_us, target_dirname
from .tuning.tasklist import write_task_list
from .version import __version__

log = logging.getLogger(__name__)


@dataclass
class BuildResult:
    """What a build produced and how long its steps took (seconds)."""

    package: Path
    manifest: dict
    tasks: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)


def versions() -> dict[str, str]:
    return {"ansor-build": __version__, **backend.versions()}


def output_signature(mod, onnx_outputs: list[str]) -> list[TensorSig]:
    """Names from the ONNX graph, shapes and dtypes from the imported Relax `main`."""
    from tvm import relax

    info = mod["main"].ret_ty  # 0.27 renamed struct info to types (ret_ty, TensorType, TupleType)
    infos = list(info.fields) if isinstance(info, relax.TupleType) else [info]
    sigs = []
    for index, item in enumerate(infos):
        name = onnx_outputs[index] if index < len(onnx_outputs) else f"output_{index}"
        sigs.append(TensorSig(name, tuple(int(d) for d in item.shape.values), str(item.dtype)))
    return sigs


@dataclass
class Prepared:
    """A model imported and partitioned for a target: what tuning and compiling both start from."""

    target: object
    model: object
    tvm_target: object
    outputs: list
    fused: object
    tasks: list
    ms_tasks: list
    timings: dict
    shapes: dict = field(default_factory=dict)


def prepare(model_path: Path, target, shapes=None, tuned: bool = False) -> Prepared:
    """Import and partition; `tuned` selects the target form of builds that tune or apply records."""
    started = time.perf_counter()
    model = load_model(model_path, shapes)
    backend.import_tvm()
    check_llvm_names(target)  # unknown mcpu/mtriple: one line, before LLVM silently uses generic (or TVM crashes)
    tvm_target = backend.make_target(target.tuned_tvm() if tuned else target.tvm)
    mod = frontend.import_onnx(model)
    outputs = output_signature(mod, [o.name for o in model.proto.graph.output])
    timings = {"import": time.perf_counter() - started}
    step = time.perf_counter()
    fused = partition.fuse(mod, tvm_target, fast_math=target.fast_math, conv_layout=target.conv_layout,
                           winograd_convs=target.winograd)
    tasks, ms_tasks = partition.extract_tasks(fused, tvm_target)
    timings["partition"] = time.perf_counter() - step
    return Prepared(target, model, tvm_target, outputs, fused, tasks, ms_tasks, timings, dict(shapes or {}))


def _select_records(prepared: Prepared, options: TuningOptions | None, log_dir: Path):
    options = options or TuningOptions()
    label = f"{prepared.model.name} for {prepared.target.name}"
    plan, applied = tune_and_select(label, prepared.tasks, prepared.ms_tasks, prepared.target, prepared.tvm_target,
                                    options, log_dir)
    if options.mode != "off":  # lets SCons key the tuning step on this model's record files without TVM
        write_task_list(options.tuning_dir / target_dirname(prepared.target.tuned_tvm()), prepared.model.sha256(),
                        prepared.shapes, [t.key for t in prepared.tasks])
    return plan, applied


def tune_model(model_path: str | Path, target_path: str | Path, options: TuningOptions, records_out: str | Path, *,
               shapes: dict[str, list[int]] | None = None):
    """The tuning step alone: plan, tune what the options allow, write the records a build will apply.

    `records_out` is rewritten only when the applied records change, so build systems rebuild nothing else.
    Returns the plan.
    """
    records_out = Path(records_out)
    check_records_out(records_out)  # before any work: a file that is not a records file is never overwritten
    prepared = prepare(Path(model_path), load_target(target_path), shapes, tuned=True)
    plan, applied = _select_records(prepared, options, records_out.parent / f"{records_out.stem}.logs")

    def compile_model():
        return codegen.compile_fused(prepared.fused, prepared.tvm_target,
                                     records.memory_database(applied, prepared.tvm_target), prepared.target.vm)

    threads = thread_choice.choose(prepared, options, applied, compile_model)
    write_records_file(records_out, prepared.target.tuned_tvm(), [t.key for t in prepared.tasks], applied, threads)

    return plan


def build_package(model_path: str | Path, target_path: str | Path, out_dir: str | Path, *,
                  shapes: dict[str, list[int]] | None = None, tuning: TuningOptions | None = None,
                  records_file: str | Path | None = None) -> BuildResult:
    """Compile `model_path` for the target described by `target_path` into the package directory `out_dir`.

    With `tuning`, records of the tuning directory are applied (and tasks tuned first, as its mode says); with
    `records_file`, exactly the records that `tune_model` wrote are applied. The directory is replaced
    atomically: a failed or interrupted build leaves the previous one (or none). An existing `out_dir` must be
    empty or a package ansor-build wrote; anything else is refused (InputError) before any work.
    """
    out_dir = Path(out_dir)
    check_replaceable(out_dir)  # before any work: a directory that is not ours is refused at once
    with no_empty_directory_on_failure(out_dir):
        return _build(Path(model_path), Path(target_path), out_dir, shapes, tuning, records_file)


def _build(model_path: Path, target_path: Path, out_dir: Path, shapes, tuning, records_file) -> BuildResult:
    started = time.perf_counter()
    target = load_target(target_path)
    cxx = toolchain.find_compiler(target)
    nvcc = toolchain.find_nvcc(target) if target.device == "cuda" else None
    libs = runtime_libraries(target, nvcc)
    tuned = records_file is not None or (tuning is not None and tuning.mode != "off")
    prepared = prepare(model_path, target, shapes, tuned)
    model, tasks, tvm_target, outputs = prepared.model, prepared.tasks, prepared.tvm_target, prepared.outputs
    timings = prepared.timings

    step = time.perf_counter()
    threads = None
    if records_file is not None:
        applied = read_records_file(Path(records_file), target.tuned_tvm())
        threads = records_file_threads(Path(records_file), target.tuned_tvm())
        log.info("%s for %s: applying %d records from %s", model.name, target.name, len(applied), records_file)
    else:
        _, applied = _select_records(prepared, tuning, out_dir.parent / f"{out_dir.name}.logs")
    timings["tune"] = time.perf_counter() - step

    step = time.perf_counter()
    database = records.memory_database(applied, tvm_target) if applied else None
    executable = codegen.compile_fused(prepared.fused, tvm_target, database, target.vm)
    timings["compile"] = time.perf_counter() - step
    if records_file is None:
        step = time.perf_counter()
        threads = thread_choice.choose(prepared, tuning, applied, lambda: executable)
        timings["threads"] = time.perf_counter() - step

    step = time.perf_counter()
    log_path = out_dir.parent / f"{out_dir.name}.link.log"
    with staged_directory(out_dir) as stage:
        device_code = cuda.DeviceCode(nvcc, target.tvm["arch"], target.embed_ptx, log_path) if nvcc else None
        codegen.export_library(executable, stage / layout.MODEL_SO, cxx, target.cxx_flags, log_path,
                               device_code=device_code, target=tvm_target)
        (stage / layout.RUNTIME_DIR).mkdir()
        for name, source in libs.items():
            shutil.copyfile(source, stage / layout.RUNTIME_DIR / name)
        _write_runner(stage, target, cxx)
        shutil.copyfile(Path(__file__).parent / "package" / "loader.py", stage / layout.LOADER)
        manifest = {
            "model": {"name": model.name, "file": model.path.name, "sha256": model.sha256()},
            "target": {"name": target.name, "tvm": target.tuned_tvm() if tuned else target.tvm,
                       "triple": target.triple, "arch": target.arch, "device": target.device, "key": target.key(),
                       "emulator": target.emulator},
            "inputs": [sig.as_dict() for sig in model.inputs],
            "outputs": [sig.as_dict() for sig in outputs],
            "runtime": {"threads": threads or target.threads, "vm": target.vm,
                        "libs": sorted(f"{layout.RUNTIME_DIR}/{n}" for n in libs),
                        "runner": layout.RUNNER_BIN if (stage / layout.RUNNER_BIN).exists() else None},
            "tasks": [dict(task.as_dict(), record_us=_record_us(applied.get(task.key))) for task in tasks],
            "tuning": {"records": len(applied), "records_sha256": records.records_digest(applied)},
            "versions": versions(),
        }
        if device_code is not None:
            manifest["device_code"] = device_code.summary()
        files = layout.package_files(target)
        manifest["requirements"] = package_requirements(stage, files, target, manifest.get("device_code"))
        (stage / layout.README).write_text(package_readme(manifest), encoding="utf-8")
        manifest = write_manifest(stage, manifest, files)
    log_path.unlink(missing_ok=True)
    timings["package"] = time.perf_counter() - step
    timings["total"] = time.perf_counter() - started
    return BuildResult(package=out_dir, manifest=manifest, tasks=tasks, timings=timings)


def _record_us(item) -> float | None:
    return round(record_latency_us(item["record"]), 3) if item else None


def _write_runner(stage: Path, target, cxx: str) -> None:
    from .runner.cache import cached_runner

    (stage / "src").mkdir()
    for source in layout.device_sources():
        shutil.copyfile(source, stage / "src" / source.name)
    if layout.RUNNER_BIN in layout.runner_files(target):
        (stage / "bin").mkdir()
        hit = cached_runner(stage / layout.RUNNER_BIN, cxx=cxx, runtime_dir=stage / layout.RUNTIME_DIR,
                            extra_flags=target.cxx_flags)
        log.debug("runner %s", "from cache" if hit else "built")

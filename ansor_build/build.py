"""Building one package: model + target -> compiled, packaged, self-describing directory."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import backend
from .backend import codegen, frontend, partition
from .model import TensorSig, load_model
from .package import layout
from .package.manifest import write_manifest
from .package.readme import package_readme
from .package.runtime_libs import runtime_libraries
from .package.staging import no_empty_directory_on_failure, staged_directory
from .target import load_target
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


def build_package(model_path: str | Path, target_path: str | Path, out_dir: str | Path, *,
                  shapes: dict[str, list[int]] | None = None) -> BuildResult:
    """Compile `model_path` for the target described by `target_path` into the package directory `out_dir`.

    The directory is replaced atomically: a failed or interrupted build leaves the previous one (or none).
    """
    out_dir = Path(out_dir)
    with no_empty_directory_on_failure(out_dir):
        return _build(Path(model_path), Path(target_path), out_dir, shapes)


def _build(model_path: Path, target_path: Path, out_dir: Path, shapes) -> BuildResult:
    timings: dict[str, float] = {}
    started = time.perf_counter()
    target = load_target(target_path)
    model = load_model(model_path, shapes)
    cxx = codegen.find_compiler(target.cxx, target.name, target.debian_package)
    libs = runtime_libraries(target)
    backend.import_tvm()
    tvm_target = backend.make_target(target.tvm)
    mod = frontend.import_onnx(model)
    outputs = output_signature(mod, [o.name for o in model.proto.graph.output])
    timings["import"] = time.perf_counter() - started

    step = time.perf_counter()
    fused = partition.fuse(mod, tvm_target)
    tasks, _ = partition.extract_tasks(fused, tvm_target)
    log.info("%s for %s: %d subgraphs to schedule", model.name, target.name, len(tasks))
    executable = codegen.compile_fused(fused, tvm_target)
    timings["compile"] = time.perf_counter() - step

    step = time.perf_counter()
    log_path = out_dir.parent / f"{out_dir.name}.link.log"
    with staged_directory(out_dir) as stage:
        codegen.export_library(executable, stage / layout.MODEL_SO, cxx, target.cxx_flags, log_path)
        (stage / layout.RUNTIME_DIR).mkdir()
        for name, source in libs.items():
            shutil.copyfile(source, stage / layout.RUNTIME_DIR / name)
        _write_runner(stage, target, cxx)
        shutil.copyfile(Path(__file__).parent / "package" / "loader.py", stage / layout.LOADER)
        manifest = {
            "model": {"name": model.name, "file": model.path.name, "sha256": model.sha256()},
            "target": {"name": target.name, "tvm": target.tvm, "triple": target.triple, "arch": target.arch,
                       "device": target.device, "key": target.key()},
            "inputs": [sig.as_dict() for sig in model.inputs],
            "outputs": [sig.as_dict() for sig in outputs],
            "runtime": {"threads": target.threads, "libs": sorted(f"{layout.RUNTIME_DIR}/{n}" for n in libs),
                        "runner": layout.RUNNER_BIN if (stage / layout.RUNNER_BIN).exists() else None},
            "tasks": [task.as_dict() for task in tasks],
            "versions": versions(),
        }
        (stage / layout.README).write_text(package_readme(manifest), encoding="utf-8")
        files = layout.package_files(target)
        manifest = write_manifest(stage, manifest, files)
    log_path.unlink(missing_ok=True)
    timings["package"] = time.perf_counter() - step
    timings["total"] = time.perf_counter() - started
    return BuildResult(package=out_dir, manifest=manifest, tasks=tasks, timings=timings)


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

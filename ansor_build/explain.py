"""`ansor-build explain`: every input of a package's build key, as the SCons tool declares it, with its hash.

Two machines that print the same keys get the same SCons signatures (run it from the SConstruct's directory with
the arguments of the AnsorModel call), so diffing two outputs shows why a CacheDir lookup missed. The inputs are
those of `ansor_build.buildkey`; file names are shown for people (SCons hashes the content of files, and names
only where they are in the command line).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import buildkey
from .errors import InputError
from .model import external_data_files
from .paths import PACKAGE_DIR, presets_dir
from .tuning import tasklist
from .tuning.store import target_dirname


@dataclass
class KeyInput:
    kind: str
    name: str
    sha256: str

    def as_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "sha256": self.sha256}


@dataclass
class StepKey:
    """One build step (SCons action): what it writes and the inputs of its key."""

    step: str
    output: str
    inputs: list[KeyInput] = field(default_factory=list)
    note: str = ""

    @property
    def key(self) -> str:
        text = "".join(f"{item.kind}\t{item.sha256}\n" for item in self.inputs)
        return hashlib.sha256(text.encode()).hexdigest()

    def as_dict(self) -> dict:
        return {"step": self.step, "output": self.output, "key": self.key, "note": self.note,
                "inputs": [item.as_dict() for item in self.inputs]}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _display(path: Path) -> str:
    """Relative to this directory when inside it, `<ansor-build>/...` for ansor-build's own files (presets as
    `<ansor-build>/targets/...` whether they come from a checkout or an installed wheel)."""
    path = Path(os.path.abspath(path))
    for base, label in ((Path.cwd(), ""), (presets_dir(), "<ansor-build>/targets/"),
                        (PACKAGE_DIR.parent, "<ansor-build>/")):
        try:
            return label + path.relative_to(base).as_posix()
        except ValueError:
            continue
    return str(path)


def _file(kind: str, path: Path) -> KeyInput:
    return KeyInput(kind, _display(path), _sha(Path(path).read_bytes()))


def _value(kind: str, text: str) -> KeyInput:
    return KeyInput(kind, text, _sha(text.encode()))


def _command(*parts: str) -> str:
    return " ".join(" ".join(parts).split())  # SCons hashes the command with whitespace collapsed


def explain(model: Path, target_path: Path, *, shapes: dict | None = None, output: str = "PACKAGE",
            mode: str = "off", tuning_dir: Path = Path("tuning"), budget_flags: str = "") -> list[StepKey]:
    """The key inputs of the tuning step (when `mode` is not off) and of the package build, in SCons's terms."""
    from .target import load_target

    target = load_target(target_path)
    model = Path(model)
    if not model.is_file():
        raise InputError(f"{model}: model file not found")
    shape_flags = " ".join(f"--shape {n}={','.join(str(d) for d in dims)}" for n, dims in sorted((shapes or {}).items()))
    model_rows = [_file("model", model)] + [_file("model data", f) for f in external_data_files(model, present=True)]
    target_rows = [_file("target file", f) for f in buildkey.target_files(target)]
    versions = _value("versions", buildkey.versions_text())
    steps = []
    records_flags = ""
    build_extra = []
    if mode != "off":
        tune, records = _tuning_step(model, target, shapes, output, mode, Path(tuning_dir), budget_flags, shape_flags)
        tune.inputs[1:1] = [*model_rows, *target_rows, versions]
        steps.append(tune)
        records_flags = f"--records {output}.records.json"
        build_extra = [records]
    build = StepKey("build", f"{output}/", [
        _value("command", _command("-m ansor_build build", str(model), "--target", str(target_path), "-o", output,
                                   shape_flags, records_flags)),
        *model_rows, *target_rows, *[_file("package source", f) for f in buildkey.source_files()], versions,
        _value("host tools", buildkey.host_tools_text(target)), *build_extra])
    steps.append(build)
    return steps


def _tuning_step(model, target, shapes, output, mode, tuning_dir, budget_flags, shape_flags):
    """The tuning step's key, and the records file row of the build step (the records as the store is now)."""
    from .backend.records import applied_records, records_digest
    from .tuning import threads as thread_choice

    from .model import files_sha256
    from .tuning.driver import records_text
    from .tuning.store import TuningStore

    flags = "" if mode == "reuse" else budget_flags
    store_dir = tuning_dir / target_dirname(target.tuned_tvm())
    files = tasklist.model_task_files(store_dir, [model, *external_data_files(model)], shapes)
    model_sha = files_sha256([model, *external_data_files(model)])
    list_path = tasklist.list_path(store_dir, model_sha, shapes)
    step = StepKey("tune", f"{output}.records.json", [
        _value("command", _command("-m ansor_build tune", str(model), "--target", str(target.path), "--tune", mode,
                                   flags, shape_flags, "--records-out", f"{output}.records.json")),
        _value("tuning", buildkey.tuning_text(target, mode, flags))])
    step.inputs += [_file("task list" if path == list_path else "task records", path) for path in files]
    keys = tasklist.read_tasks(list_path)
    if keys is None:
        step.note = (f"no task list for this model in {_display(store_dir)}: the key covers every record file of "
                     f"the target (TVM was imported to find the model's tasks)")
        from .build import prepare

        keys = [task.key for task in prepare(model, target, shapes, tuned=True).tasks]
    applied = applied_records(TuningStore(tuning_dir, target.tuned_tvm(), ""), keys)
    threads = None
    if applied and thread_choice.may_choose(target):
        threads = thread_choice.stored_choice(thread_choice.choice_path(store_dir, model_sha, shapes),
                                              records_digest(applied))
    text = records_text(target.tuned_tvm(), keys, applied, threads)
    if mode in ("incremental", "full"):
        step.note = (step.note + "; " if step.note else "") + "records as the store is now: this mode may tune more"
    return step, KeyInput("records file", f"{output}.records.json ({len(applied)} records)", _sha(text.encode()))


def format_steps(steps: list[StepKey]) -> str:
    lines = []
    for step in steps:
        lines.append(f"{step.step} step -> {step.output}  key {step.key[:16]}")
        if step.note:
            lines.append(f"  note: {step.note}")
        lines += [f"  {item.kind:<14} {item.sha256[:16]}  {item.name}" for item in step.inputs]
    return "\n".join(lines)

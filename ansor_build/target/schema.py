"""The schema of target description YAML files, and validation with messages that name file, key and fix."""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from .show import key_text, kind_name, shown


@dataclass(frozen=True)
class Field:
    """One allowed key: its type, allowed values and meaning (the meaning is shown by `ansor-build targets --keys`)."""

    kind: str  # "str", "int", "number", "bool", "list[str]", "map"
    doc: str
    choices: tuple = ()
    fields: dict | None = None  # for "map"
    min: float | None = None
    max: float | None = None  # numbers also must be finite
    pattern: str = ""  # strings: a regular expression the whole value matches
    example: str = ""  # strings: what the pattern means, for the error


# Names LLVM and TVM read as one word of a target string: no spaces, quotes or option syntax can be smuggled in.
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}"
_NAME_EXAMPLE = "letters, digits and . _ + - only"
MAX_CORES = 4096


_TVM_COMMON = {
    "kind": Field("str", "TVM target kind", choices=("llvm", "cuda")),
    "mtriple": Field("str", "LLVM target triple, e.g. aarch64-linux-gnu", pattern=_NAME,
                     example=f"{_NAME_EXAMPLE}, e.g. x86_64-linux-gnu"),
    "mcpu": Field("str", "CPU name (LLVM -mcpu), e.g. haswell, cortex-a72", pattern=_NAME,
                  example=f"{_NAME_EXAMPLE}, e.g. haswell"),
    "mattr": Field("list[str]", "LLVM CPU features, e.g. [+avx2, +fma] or [+neon]", pattern=r"[+-][A-Za-z0-9_.-]{1,99}",
                   example="+ or - and a feature name, e.g. +avx2"),
    "mfloat-abi": Field("str", "ARM float ABI", choices=("hard", "soft", "softfp")),
    "num-cores": Field("int", "cores the tuner and the runtime may use", min=1, max=MAX_CORES),
    "arch": Field("str", "CUDA architecture, e.g. sm_80", pattern=_NAME, example=f"{_NAME_EXAMPLE}, e.g. sm_80"),
    "max_num_threads": Field("int", "CUDA: max threads per block", min=1, max=4096),
    "max_threads_per_block": Field("int", "CUDA: max threads per block MetaSchedule binds (default max_num_threads)",
                                   min=1, max=4096),

    "thread_warp_size": Field("int", "CUDA: warp size", min=1, max=1024),
    "max_shared_memory_per_block": Field("int", "CUDA: shared memory per block in bytes (tuning default 49152)", min=1,
                                         max=1 << 30),

    "registers_per_block": Field("int", "CUDA: registers per block", min=1, max=1 << 24),
}

TVM_FIELDS = dict(_TVM_COMMON)
TVM_FIELDS["host"] = Field("map", "host target of a GPU target (same keys as tvm)", fields=dict(_TVM_COMMON))

SCHEMA: dict[str, Field] = {
    "extends": Field("str", "a preset name (e.g. x86_64-avx2) or a path relative to this file"),
    "name": Field("str", "target name used in build paths and manifests (default: the file name)",
                  pattern=r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,99}",
                  example="letters, digits and _ . + - (not first), at most 100, e.g. rpi4 or x86_64-avx2"),
    "description": Field("str", "one line for people", pattern=r"[^\x00-\x1f\x7f]{0,500}",
                         example="one line of at most 500 characters"),
    "tvm": Field("map", "the TVM target, in TVM's dict form", fields=TVM_FIELDS),
    "toolchain": Field("map", "how to compile and link for the device", fields={
        "cxx": Field("str", "C++ compiler that links model.so and the runner (default g++)"),
        "flags": Field("list[str]", "extra compiler/linker flags"),
        "debian_package": Field("str", "Debian package that provides cxx (named in the missing-compiler error)"),
        "emulator": Field("list[str]", "command that runs the device's binaries on the build host, e.g. "
                                       "[qemu-aarch64, -L, /usr/aarch64-linux-gnu] (checks of cross-built packages)"),
        "emulator_package": Field("str", "Debian package that provides the emulator (named in the missing-tool error)"),
        "nvcc": Field("str", "CUDA compiler that turns a GPU target's kernels into device code (default nvcc)"),
        "nvcc_package": Field("str", "how to install nvcc (named in the missing-tool error)"),
    }),
    "runtime": Field("map", "what the package carries to run on the device", fields={
        "libs": Field("str", "where the TVM runtime libraries come from: 'host' (this machine's TVM), 'wheel' (the "
                             "PyPI wheels of the installed TVM versions for the target's arch) or 'none'",
                      choices=("host", "wheel", "none")),
        "threads": Field("int", "TVM_NUM_THREADS the loaders set when the environment does not (default: num-cores)",
                         min=1, max=MAX_CORES),
        "runner": Field("bool", "build the C++ runner for the device (default true)"),
        "vm": Field("str", "how the Relax VM runs the model: 'compiled' (the VM's code compiled to machine code with "
                           "the kernels: less per-call overhead; the default on CPU targets) or 'bytecode' (interpreted; "
                           "the default on GPU targets; `ansor-build profile` needs it)",
                    choices=("compiled", "bytecode")),
        "device": Field("str", "device the loaders run on", choices=("cpu", "cuda")),
        "ptx": Field("bool", "GPU targets: also embed PTX for tvm.arch, which newer GPUs compile when loading "
                             "(default true; the cubin for tvm.arch is always embedded)"),
    }),
    "tuning": Field("map", "tuning defaults (overridable per build)", fields={
        "trials": Field("int", "total measured trials", min=0, max=10**9),
        "trials_per_task": Field("int", "max trials for one task", min=0, max=10**9),
        "time_budget": Field("number", "wall-clock seconds for tuning", min=0, max=366 * 86400),
        "trials_per_iter": Field("int", "candidates measured per search round (default 32)", min=1, max=100_000),
        "population": Field("int", "evolutionary search population per round (default 512; lower is faster)",
                            min=4, max=1_000_000),
        "runner": Field("map", "where candidates are measured (default: this machine)", fields={
            "kind": Field("str", "local: this machine; rpc: devices handed out by a TVM RPC tracker",
                          choices=("local", "rpc")),
            "tracker": Field("str", "rpc: the tracker's HOST:PORT, e.g. 10.0.0.5:9190"),
            "key": Field("str", "rpc: the device key the servers registered with (rpc_server --key)"),
            "timeout": Field("number", "rpc: seconds one device may take per candidate (default 30)", min=1,
                             max=86400),
            "parallel": Field("int", "rpc: devices measuring at once (default 1)", min=1, max=MAX_CORES),
        }),
    }),
    "optimize": Field("map", "graph-level choices of the build", fields={
        "fast_math": Field("bool", "exp, erf, tanh and softmax as TVM's vectorizable polynomial approximations "
                                   "instead of libm calls (default true; false for exact libm results)"),
        "conv_layout": Field("str", "layout the convolutions of a CPU target run in: 'NHWC' (channels last, the "
                                    "default: output channels are the vector lanes) or 'NCHW' (as ONNX has them)",
                             choices=("NHWC", "NCHW")),
        "winograd": Field("bool", "3x3 stride-1 convolutions of a CPU target in NHWC as Winograd F(4x4, 3x3): "
                                  "4x fewer multiply-adds, a slightly larger rounding error (default true)"),
    }),

}


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "list[str]":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == "map":
        return isinstance(value, dict)
    raise AssertionError(kind)


_KIND_WORDS = {"str": "a string", "int": "an integer", "number": "a number", "bool": "true or false",
               "list[str]": "a list of strings", "map": "a mapping"}


def describe(value: Any) -> str:
    """Say what a YAML value is, for error messages (at most about 50 characters, whatever the value)."""
    return f"{kind_name(value)} {shown(value, 40)}"


def _number(limit: float) -> str:
    return str(int(limit)) if float(limit).is_integer() else f"{limit:g}"


def _check_range(field: Field, value: float, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"{where}: {value} is not allowed (expected a finite number)")
    if field.min is not None and value < field.min:
        raise InputError(f"{where}: {shown(value)} is too small (minimum {_number(field.min)})")
    if field.max is not None and value > field.max:
        raise InputError(f"{where}: {shown(value)} is too large (maximum {_number(field.max)})")


def validate(data: Any, path: str, schema: dict[str, Field] = SCHEMA, prefix: str = "") -> None:
    """Check one YAML document (before merging `extends`) against the schema.

    Raises InputError naming the file, the key path, what was found and what is allowed.
    """
    if not isinstance(data, dict):
        where = prefix.rstrip(".") or "top level"
        raise InputError(f"{path}: {where}: expected a mapping of keys, found {kind_name(data)}")
    for key, value in data.items():
        keypath = f"{prefix}{key_text(key)}"
        field = schema.get(key) if isinstance(key, str) else None
        if field is None:
            allowed = ", ".join(schema)
            name = key_text(key)
            close = difflib.get_close_matches(name, list(schema), n=1, cutoff=0.5) if len(name) <= 100 else []
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
            raise InputError(f"{path}: {keypath}: unknown key{hint} (allowed here: {allowed})")
        if not _type_ok(field.kind, value):
            raise InputError(f"{path}: {keypath}: expected {_KIND_WORDS[field.kind]}, found {describe(value)}")
        if field.choices and value not in field.choices:
            allowed = ", ".join(map(str, field.choices))
            raise InputError(f"{path}: {keypath}: {shown(value)} is not allowed (expected one of: {allowed})")
        if field.kind in ("int", "number"):
            _check_range(field, value, f"{path}: {keypath}")
        if field.pattern:
            for item in value if isinstance(value, list) else [value]:
                if not re.fullmatch(field.pattern, item):
                    raise InputError(f"{path}: {keypath}: {shown(item)} is not allowed ({field.example})")
        if field.kind == "map":
            validate(value, path, field.fields, prefix=f"{keypath}.")

"""The schema of target description YAML files, and validation with messages that name file, key and fix."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from ..errors import InputError


@dataclass(frozen=True)
class Field:
    """One allowed key: its type, allowed values and meaning (the meaning is shown by `ansor-build targets --keys`)."""

    kind: str  # "str", "int", "number", "bool", "list[str]", "map"
    doc: str
    choices: tuple = ()
    fields: dict | None = None  # for "map"
    min: float | None = None


_TVM_COMMON = {
    "kind": Field("str", "TVM target kind", choices=("llvm", "cuda")),
    "mtriple": Field("str", "LLVM target triple, e.g. aarch64-linux-gnu"),
    "mcpu": Field("str", "CPU name (LLVM -mcpu), e.g. haswell, cortex-a72"),
    "mattr": Field("list[str]", "LLVM CPU features, e.g. [+avx2, +fma] or [+neon]"),
    "mfloat-abi": Field("str", "ARM float ABI", choices=("hard", "soft", "softfp")),
    "num-cores": Field("int", "cores the tuner and the runtime may use", min=1),
    "arch": Field("str", "CUDA architecture, e.g. sm_80"),
    "max_num_threads": Field("int", "CUDA: max threads per block", min=1),
    "max_threads_per_block": Field("int", "CUDA: max threads per block MetaSchedule binds (default max_num_threads)",
                                   min=1),

    "thread_warp_size": Field("int", "CUDA: warp size", min=1),
    "max_shared_memory_per_block": Field("int", "CUDA: shared memory per block in bytes (tuning default 49152)", min=1),

    "registers_per_block": Field("int", "CUDA: registers per block", min=1),
}

TVM_FIELDS = dict(_TVM_COMMON)
TVM_FIELDS["host"] = Field("map", "host target of a GPU target (same keys as tvm)", fields=dict(_TVM_COMMON))

SCHEMA: dict[str, Field] = {
    "extends": Field("str", "a preset name (e.g. x86_64-avx2) or a path relative to this file"),
    "name": Field("str", "target name used in build paths and manifests (default: the file name)"),
    "description": Field("str", "one line for people"),
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
                         min=1),
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
        "trials": Field("int", "total measured trials", min=0),
        "trials_per_task": Field("int", "max trials for one task", min=0),
        "time_budget": Field("number", "wall-clock seconds for tuning", min=0),
        "trials_per_iter": Field("int", "candidates measured per search round (default 32)", min=1),
        "population": Field("int", "evolutionary search population per round (default 512; lower is faster)",
                            min=4),
        "runner": Field("map", "where candidates are measured (default: this machine)", fields={
            "kind": Field("str", "local: this machine; rpc: devices handed out by a TVM RPC tracker",
                          choices=("local", "rpc")),
            "tracker": Field("str", "rpc: the tracker's HOST:PORT, e.g. 10.0.0.5:9190"),
            "key": Field("str", "rpc: the device key the servers registered with (rpc_server --key)"),
            "timeout": Field("number", "rpc: seconds one device may take per candidate (default 30)", min=1),
            "parallel": Field("int", "rpc: devices measuring at once (default 1)", min=1),
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
    """Say what a YAML value is, for error messages."""
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping",
             type(None): "null"}
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{names.get(type(value), type(value).__name__)} {text}"


def validate(data: Any, path: str, schema: dict[str, Field] = SCHEMA, prefix: str = "") -> None:
    """Check one YAML document (before merging `extends`) against the schema.

    Raises InputError naming the file, the key path, what was found and what is allowed.
    """
    if not isinstance(data, dict):
        where = prefix.rstrip(".") or "top level"
        raise InputError(f"{path}: {where}: expected a mapping of keys, found {describe(data)}")
    for key, value in data.items():
        keypath = f"{prefix}{key}"
        field = schema.get(key) if isinstance(key, str) else None
        if field is None:
            allowed = ", ".join(schema)
            close = difflib.get_close_matches(str(key), list(schema), n=1, cutoff=0.5)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
            raise InputError(f"{path}: {keypath}: unknown key{hint} (allowed here: {allowed})")
        if not _type_ok(field.kind, value):
            raise InputError(f"{path}: {keypath}: expected {_KIND_WORDS[field.kind]}, found {describe(value)}")
        if field.choices and value not in field.choices:
            allowed = ", ".join(map(str, field.choices))
            raise InputError(f"{path}: {keypath}: '{value}' is not allowed (expected one of: {allowed})")
        if field.min is not None and value < field.min:
            raise InputError(f"{path}: {keypath}: {value} is too small (minimum {field.min:g})")
        if field.kind == "map":
            validate(value, path, field.fields, prefix=f"{keypath}.")

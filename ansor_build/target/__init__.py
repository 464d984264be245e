"""Target descriptions: YAML files under `targets/` mapped onto TVM's target dict form plus build settings.

Target files are hostile input: `load_target` reads them within fixed bounds (`safeyaml`), checks every key against
the schema, and reports anything wrong as one InputError line naming the file and key. Names only LLVM can check
(`mcpu`, `mtriple`) are checked by `llvm.check_llvm_names` where a build imports TVM.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from .load import load_layers, merged, origins
from .runner import RunnerSpec, runner_spec
from .show import text_of

_HOST_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(
    platform.machine().lower(), platform.machine().lower())


@dataclass(frozen=True)
class Target:
    """A loaded, validated target: the merged spec plus every file it came from.

    `origins` maps each key path of the spec (`tvm.mcpu`) to the file that set it, for errors found after loading.
    """

    name: str
    path: Path
    files: tuple[Path, ...]
    spec: dict = field(repr=False)
    origins: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def tvm(self) -> dict:
        """The TVM target in dict form (`tvm.target.Target(target.tvm)`)."""
        return self.spec["tvm"]

    def tuned_tvm(self) -> dict:
        """The TVM target of builds that tune or apply records.

        MetaSchedule needs `num-cores` on CPU targets, and records tuned for N cores are for N cores only: when the
        target names none, the runtime thread count (else this machine's CPU count) is used, which also keys the
        tuning database.

        MetaSchedule's GPU rules (thread binding, the shared-memory check of every candidate) need the block limits
        `max_threads_per_block` and `max_shared_memory_per_block`, which `{"kind": "cuda", "arch": ...}` leaves out:
        when the target names none, those of every CUDA GPU since sm_30 are used (`max_num_threads`, else 1024
        threads; 48 KiB, the static shared memory a block may use without opting in).
        """
        if self.kind == "llvm" and "num-cores" not in self.tvm:
            return dict(self.tvm, **{"num-cores": self.threads or os.cpu_count() or 1})
        if self.kind == "cuda":
            limits = {"max_threads_per_block": self.tvm.get("max_num_threads", 1024),
                      "max_shared_memory_per_block": 48 * 1024}
            return {**limits, **self.tvm}
        return self.tvm


    @property
    def kind(self) -> str:
        return self.tvm["kind"]

    @property
    def device(self) -> str:
        """Where the model runs: "cpu" or "cuda"."""
        return self.spec.get("runtime", {}).get("device", "cuda" if self.kind == "cuda" else "cpu")

    @property
    def triple(self) -> str:
        """The LLVM triple of the code that runs on the CPU (the host part of a GPU target)."""
        cpu = self.tvm.get("host", self.tvm) if self.kind == "cuda" else self.tvm
        return cpu.get("mtriple", "")

    @property
    def arch(self) -> str:
        """The CPU architecture of the device, e.g. x86_64, aarch64, armv7l."""
        return self.triple.split("-", 1)[0]

    @property
    def runs_on_host(self) -> bool:
        """True when this machine can run the package's CPU code natively."""
        return self.arch == _HOST_ARCH

    @property
    def cxx(self) -> str:
        return self.spec.get("toolchain", {}).get("cxx", "g++")

    @property
    def cxx_flags(self) -> list[str]:
        return list(self.spec.get("toolchain", {}).get("flags", []))

    @property
    def debian_package(self) -> str | None:
        return self.spec.get("toolchain", {}).get("debian_package")

    @property
    def emulator(self) -> list[str]:
        """The command prefix that runs the device's binaries on the build host (empty: none named)."""
        return list(self.spec.get("toolchain", {}).get("emulator", []))

    @property
    def emulator_package(self) -> str | None:
        return self.spec.get("toolchain", {}).get("emulator_package")

    @property
    def nvcc(self) -> str:
        return self.spec.get("toolchain", {}).get("nvcc", "nvcc")

    @property
    def nvcc_package(self) -> str | None:
        return self.spec.get("toolchain", {}).get("nvcc_package")

    @property
    def embed_ptx(self) -> bool:
        return self.spec.get("runtime", {}).get("ptx", True)

    @property
    def runtime_libs(self) -> str:
        return self.spec.get("runtime", {}).get("libs", "host")

    @property
    def build_runner(self) -> bool:
        return self.spec.get("runtime", {}).get("runner", True)

    @property
    def vm(self) -> str:
        """How the Relax VM runs the model: "compiled" (CPU default) or "bytecode" (GPU default)."""
        return self.spec.get("runtime", {}).get("vm", "bytecode" if self.device == "cuda" else "compiled")

    @property
    def threads(self) -> int | None:
        """TVM_NUM_THREADS the package's loaders use when the environment does not set it."""
        runtime = self.spec.get("runtime", {})
        return runtime.get("threads", self.tvm.get("num-cores"))

    @property
    def fast_math(self) -> bool:
        return bool(self.spec.get("optimize", {}).get("fast_math", True))

    @property
    def conv_layout(self) -> str:
        """"NHWC" or "NCHW": the layout of a CPU target's convolutions (GPU targets keep the model's)."""
        return self.spec.get("optimize", {}).get("conv_layout", "NHWC")

    @property
    def winograd(self) -> bool:
        """Whether a CPU target's NHWC 3x3 stride-1 convolutions run as Winograd F(4x4, 3x3) (default true)."""
        return bool(self.spec.get("optimize", {}).get("winograd", True))

    @property
    def tuning(self) -> dict:
        return dict(self.spec.get("tuning", {}))

    @property
    def runner(self) -> RunnerSpec:
        """Where tuning measures candidates (`tuning.runner`; default: this machine). Not part of `key()`: the
        records of a target are the same wherever it was measured."""
        return runner_spec(self.tuning.get("runner", {}), str(self.path), self.cxx, self.cxx_flags)

    def canonical(self) -> dict:
        """Everything of the spec that changes the compiled code (not name, description or tuning budgets)."""
        return {key: self.spec[key] for key in ("tvm", "toolchain", "runtime") if key in self.spec}

    def key(self) -> str:
        """A short stable id of `canonical()`; names the per-target tuning database."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_target(path: str | Path) -> Target:
    """Load a target YAML file, follow `extends`, validate, and check the required keys."""
    path = Path(path)
    layers = load_layers(path)
    spec, files = merged(layers), [file for file, _ in layers]
    where = text_of(str(path), 300)
    tvm = spec.get("tvm")
    if not tvm or "kind" not in tvm:
        raise InputError(f"{where}: tvm.kind: missing (expected one of: llvm, cuda), in this file or one it extends")
    if tvm["kind"] == "llvm" and "mtriple" not in tvm:
        raise InputError(f"{where}: tvm.mtriple: missing; name the device's triple, e.g. x86_64-linux-gnu or "
                         f"aarch64-linux-gnu (TVM's default triple is not portable)")
    if tvm["kind"] == "cuda":
        for key in ("arch", "host"):
            if key not in tvm:
                raise InputError(f"{where}: tvm.{key}: missing; a cuda target needs tvm.arch (e.g. sm_80) and tvm.host")
        if "mtriple" not in tvm["host"]:
            raise InputError(f"{where}: tvm.host.mtriple: missing; name the host CPU's triple, e.g. x86_64-linux-gnu")
    if "host" in tvm and tvm["kind"] != "cuda":
        raise InputError(f"{where}: tvm.host: only a cuda target has a separate host (tvm.kind is '{tvm['kind']}')")
    runner_spec(spec.get("tuning", {}).get("runner", {}), where)  # one-line errors now, not when tuning
    name = spec.get("name", path.stem)
    return Target(name=name, path=path, files=tuple(files), spec=spec, origins=origins(layers))

"""Running a package's C++ runner in a fresh process, under an emulator when the package is for another CPU.

This is how cross-built packages are checked on the build host: `qemu-aarch64 -L /usr/aarch64-linux-gnu
PKG/bin/ansor_runner ...` runs the device's own binaries (runner, TVM runtime, model.so) unchanged.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..errors import InputError, ToolError
from ..package.layout import RUNNER_BIN
from ..toolchain import host_arch

_LATENCY = re.compile(r"^latency_ms median=([\d.]+)", re.MULTILINE)


def package_emulator(package: Path, manifest: dict) -> list[str] | None:
    """The command prefix that runs `package`'s binaries here: None when they run natively.

    Raises InputError when they cannot run here (another CPU and no emulator, or the emulator is missing).
    """
    target = manifest.get("target", {})
    arch = target.get("arch") or host_arch()
    if arch == host_arch():
        return None
    where = f"{package}: this {arch} package cannot run on this {host_arch()} machine"
    if RUNNER_BIN not in manifest.get("files", {}):
        raise InputError(f"{where}: it has no {RUNNER_BIN} (its target packages no runtime: runtime.libs is none)")
    emulator = target.get("emulator") or []
    if not emulator:
        raise InputError(f"{where}: its target names no toolchain.emulator")
    program = shutil.which(emulator[0])
    if program is None:
        raise InputError(f"{package}: emulator '{emulator[0]}' not found on PATH; install it with: "
                         f"apt-get install qemu-user")
    return [program, *emulator[1:]]


def run_runner(package: Path, arrays: list[np.ndarray], *, emulator: list[str] | None = None,
               repeat: int = 0) -> tuple[list[np.ndarray], float | None]:
    """Run `package`'s bin/ansor_runner on `arrays` (manifest input order); its outputs and median latency in ms.

    The latency is None when `repeat` is 0 (the runner then runs once more, untimed for this purpose).
    """
    package = Path(package)
    runner = package / RUNNER_BIN
    if not runner.is_file():
        raise InputError(f"{package}: has no {RUNNER_BIN} (a target with runtime.libs: none or runtime.runner: false)")
    with tempfile.TemporaryDirectory(prefix="ansor-runner-") as tmp:
        args = []
        for index, array in enumerate(arrays):
            path = Path(tmp) / f"input_{index}.npy"
            np.save(path, array)
            args += ["--input", str(path)]
        out = Path(tmp) / "out"
        command = [*(emulator or []), str(runner), *args, "--output-dir", str(out), "--warmup", "0",
                   "--repeat", str(max(repeat, 1))]
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            raise ToolError("running the package runner", command, proc.returncode,
                            detail=lines[-1] if lines else "no output")
        outputs = [np.load(path) for path in sorted(out.glob("output_*.npy"), key=lambda p: int(p.stem[7:]))]
    match = _LATENCY.search(proc.stdout)
    return outputs, (float(match.group(1)) if match and repeat else None)

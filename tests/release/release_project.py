"""The release tier's product repo: its files, checkouts of it, and reading what an SCons run did."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from helpers import run_scons

TARGET = """extends: x86_64-avx2
name: release
tvm: {num-cores: 2}
runtime: {threads: 2}
tuning: {trials_per_task: 2, trials_per_iter: 2, population: 8}
"""

SCONSTRUCT = """
import ansor_build

env = Environment(tools=["default", "ansor"], toolpath=[ansor_build.scons_toolpath()],
                  ANSOR_TARGET="targets/release.yaml", ANSOR_TUNE=ARGUMENTS.get("tune", "reuse"), ANSOR_ARCHIVE=1)
if ARGUMENTS.get("cache"):
    CacheDir(ARGUMENTS["cache"])
env.AnsorModel("build/release/mlp", "models/mlp.onnx")
# The dynamic-batch MLP at batch 1: every subgraph shared with mlp, its own task list (model bytes + shapes).
env.AnsorModel("build/release/mlp_dyn", "models/mlp_dyn.onnx", ANSOR_SHAPES="input=1,64")
"""

MODELS = ("mlp", "mlp_dyn")
SHAPES = {"mlp": [], "mlp_dyn": ["--shape", "input=1,64"]}


class Checkout:
    """One checkout of the product repo."""

    def __init__(self, root: Path):
        self.root = root

    def scons(self, *args, check=True) -> subprocess.CompletedProcess:
        return run_scons(self.root, *args, check=check)

    @staticmethod
    def commands(proc, step: str | None = None) -> list[str]:
        """The ansor-build command lines an SCons run executed (optionally only `build`, `tune` or `archive`)."""
        return [line for line in proc.stdout.splitlines()
                if "-m ansor_build" in line and (step is None or f" {step} " in line)]

    @staticmethod
    def retrieved(proc) -> set[str]:
        """Files an SCons run took from the CacheDir."""
        return set(re.findall(r"Retrieved `([^']+)' from cache", proc.stdout))

    def outputs(self) -> list[str]:
        """Every file the SConstruct declares: package files, records files, archives."""
        from ansor_build.package.layout import package_files
        from ansor_build.target import load_target

        files = package_files(load_target(self.root / "targets/release.yaml"))
        out = []
        for name in MODELS:
            out += [f"build/release/{name}/{f}" for f in files]
            out += [f"build/release/{name}.records.json", f"build/release/{name}.tar.gz"]
        return sorted(out)

    def digests(self) -> dict[str, bytes]:
        return {name: (self.root / name).read_bytes() for name in self.outputs()}


def checkout(template: Path, dest: Path, store: Path | None = None) -> Checkout:
    """Copy the repo like a fresh clone (new mtimes), optionally with another committed store."""
    shutil.copytree(template, dest, copy_function=shutil.copyfile)
    if store is not None:
        shutil.rmtree(dest / "tuning")
        shutil.copytree(store, dest / "tuning", copy_function=shutil.copyfile)
    later = time.time() + 1000
    for path in (dest / "tuning").rglob("*"):
        os.utime(path, (later, later))  # other mtimes than any other checkout's
    return Checkout(dest)

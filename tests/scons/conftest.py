"""Fixtures of the SCons tier: a small product-repo-like project in a temporary directory."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from helpers import run_scons

SCONSTRUCT = '''
import atexit, sys
import ansor_build

atexit.register(lambda: print("TVM_IMPORTED=%s" % ("tvm" in sys.modules)))
env = Environment(tools=["default", "ansor"], toolpath=[ansor_build.scons_toolpath()],
                  ANSOR_TARGET="targets/dev.yaml")
if ARGUMENTS.get("fake_versions"):
    env["ANSOR_VERSIONS"] = ARGUMENTS["fake_versions"]
target = ARGUMENTS.get("target")
if ARGUMENTS.get("tune"):
    env["ANSOR_TUNE"] = ARGUMENTS["tune"]
for name in ARGUMENTS.get("models", "mlp,mobilenet").split(","):
    kw = {"ANSOR_TARGET": target} if target else {}
    env.AnsorModel("build/dev/" + name, "models/%s.onnx" % name, **kw)
'''


class Project:
    """A temporary SCons project with two zoo models and a local target that extends a preset."""

    def __init__(self, root: Path):
        self.root = root

    def scons(self, *args, check=True) -> subprocess.CompletedProcess:
        return run_scons(self.root, *args, check=check)

    def tuned(self, proc) -> list[str]:
        """Records files that an SCons run's tuning steps (re)wrote, from the command lines it printed."""
        return sorted(line.split(" --records-out ")[1].split()[0] for line in proc.stdout.splitlines()
                      if "-m ansor_build" in line and " tune " in line)

    def built(self, proc) -> list[str]:

        """Package directories that an SCons run (re)built, from the command lines it printed."""
        return sorted(line.split(" -o ")[1].split()[0] for line in proc.stdout.splitlines()
                      if "-m ansor_build" in line and " build " in line)


@pytest.fixture
def project(tmp_path, zoo_dir) -> Project:
    root = tmp_path / "product"
    (root / "models").mkdir(parents=True)
    (root / "targets").mkdir()
    for name in ("mlp", "mobilenet"):
        (root / "models" / f"{name}.onnx").write_bytes((zoo_dir / f"{name}.onnx").read_bytes())
    (root / "targets" / "base.yaml").write_text("extends: x86_64-avx2\ndescription: base\ntvm: {num-cores: 2}\n"
                                                "tuning: {trials_per_task: 8, trials_per_iter: 8, population: 32}\n")
    (root / "targets" / "dev.yaml").write_text("extends: base.yaml\nname: dev\n")
    (root / "SConstruct").write_text(SCONSTRUCT)
    return Project(root)

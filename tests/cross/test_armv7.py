"""armv7 hard-float packages: compiled and exported with the cross compiler; no runtime exists to run them here."""

from __future__ import annotations

import json
import subprocess

import pytest

from ansor_build import zoo
from ansor_build.package import layout
from ansor_build.package.elf import newest, read_elf
from cross_tools import require_tool
from helpers import one_line_error, run_cli

pytestmark = pytest.mark.cross


@pytest.fixture(autouse=True)
def _tools():
    require_tool("arm-linux-gnueabihf-g++", "apt-get install g++-arm-linux-gnueabihf")


@pytest.mark.parametrize("name", zoo.NAMES)
def test_armv7_model_is_32bit_arm_hard_float_eabi5(cross_package, name):
    package = cross_package("armv7", name)
    info = read_elf(package / "model.so")
    assert (info.machine, info.bits, info.float_abi) == ("arm", 32, "hard")
    assert info.flags >> 24 == 5  # EABI version 5
    header = subprocess.run(["readelf", "-h", str(package / "model.so")], capture_output=True, text=True,
                            check=True).stdout
    assert "ELF32" in header and "Machine:                           ARM" in header
    assert "Version5 EABI, hard-float ABI" in header
    assert set(info.needed) <= {"libc.so.6", "libgcc_s.so.1", "libm.so.6"}  # nothing of TVM: the device adds it
    # The README's floor, thread pool included: glibc 2.4 (2.34 moved pthread_create into libc under a new version)
    assert newest([v for vs in info.versions.values() for v in vs], "GLIBC") == "2.4"


def test_armv7_package_holds_no_runtime_and_says_what_the_device_needs(cross_package, zoo_dir):
    package = cross_package("armv7", "convnet")
    manifest = json.loads((package / layout.MANIFEST).read_text())
    assert sorted(manifest["files"]) == ["README.md", "loader.py", "model.so", "src/ansor_runner.cc", "src/npy.h"]
    assert manifest["runtime"]["libs"] == [] and manifest["runtime"]["runner"] is None
    assert manifest["target"]["triple"] == "armv7l-linux-gnueabihf"
    assert manifest["requirements"]["files"]["model.so"]["float_abi"] == "hard"
    readme = (package / layout.README).read_text()
    assert "## What the device needs" in readme
    assert f"apache-tvm {manifest['versions']['apache-tvm']} built for this CPU" in readme
    line = one_line_error(run_cli("check", package, "--model", zoo_dir / "convnet.onnx"))
    assert "this armv7l package cannot run on this x86_64 machine: it has no bin/ansor_runner" in line

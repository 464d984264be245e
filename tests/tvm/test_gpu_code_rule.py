"""Which GPUs can run a package's device code: the rule the Python loader and the C++ runner check before the first
kernel loads (otherwise the CUDA driver fails with CUDA_ERROR_NO_BINARY_FOR_GPU and no word of what to do).

No GPU is needed: the rule is a function of the manifest's `device_code` and the GPU's compute version, and the
runner's C++ copy is compiled into a small harness and checked against the loader's on every case. On a real GPU,
tests/cross/test_gpu.py runs a package built for another arch.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess

import pytest

from ansor_build.package.loader import gpu_code_problem
from ansor_build.package.runtime_libs import host_library
from ansor_build.runner import RUNNER_SOURCE_DIR
from ansor_build.runner.build import RUNNER_MAIN, runner_command

pytestmark = pytest.mark.tvm

SASS = ["sm_75", "sm_80", "sm_86", "sm_89", "sm_90", "sm_90a", "sm_100", "sm_120"]
GPUS = ["7.5", "8.0", "8.6", "8.7", "8.9", "9.0", "10.0", "10.3", "12.0"]


def code(sass: list[str], ptx: bool) -> dict:
    return {"sass": sass, "ptx": [arch.replace("sm_", "compute_") for arch in sass] if ptx else []}


@pytest.mark.parametrize(("sass", "ptx", "gpu", "runs"), [
    (["sm_80"], False, "8.0", True),
    (["sm_80"], False, "8.6", True),     # SASS runs on the same major, newer minor
    (["sm_86"], False, "8.0", False),    # ... not an older minor
    (["sm_80"], False, "9.0", False),    # ... not another major
    (["sm_80"], True, "9.0", True),      # PTX is compiled by the driver for newer GPUs
    (["sm_90"], True, "8.9", False),     # ... not for older ones
    (["sm_90a"], False, "9.0", True),
    (["sm_90a"], True, "10.0", False),   # 'a' code runs on that exact GPU only, PTX included
    (["sm_75", "sm_90"], False, "9.0", True),
])
def test_rule(sass, ptx, gpu, runs):
    assert (gpu_code_problem(code(sass, ptx), gpu) is None) == runs


def test_message_says_what_to_do():
    assert gpu_code_problem(code(["sm_80"], False), "9.0") == (
        "this GPU is sm_90 and the package's device code cannot run on it (SASS for sm_80, no PTX): rebuild it for "
        "this GPU (a target with `tvm: {arch: sm_90}`, as ansor-build's cuda-sm_90 preset), or keep PTX "
        "(`runtime: {ptx: true}`) so that newer GPUs compile it when it loads")
    older = gpu_code_problem(code(["sm_86"], True), "7.5")
    assert "this GPU is sm_75" in older and "PTX for compute_86" in older and "keep PTX" not in older


HARNESS = """\
#define main ansor_runner_main
#include "ansor_runner.cc"
#undef main
#include <iostream>

// stdin: one case per line, "VERSION SASS,... PTX,..." ('-' for none); stdout: GpuCodeProblem's line ('' = runs).
static std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) if (item != "-") out.push_back(item);
  return out;
}

int main() {
  for (std::string version, sass, ptx; std::cin >> version >> sass >> ptx;) {
    Manifest man;
    man.sass = Split(sass);
    man.ptx = Split(ptx);
    std::cout << GpuCodeProblem(man, version) << "\\n";
  }
  return 0;
}
"""


def test_runner_applies_the_loaders_rule(tmp_path):
    if shutil.which("g++") is None:  # pragma: no cover
        pytest.skip("g++ not available")
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    for name in ("libtvm_runtime.so", "libtvm_ffi.so"):
        (runtime / name).symlink_to(host_library(name))
    harness = tmp_path / "harness.cc"
    harness.write_text(HARNESS)
    command = runner_command(tmp_path / "bin" / "harness", runtime_dir=runtime)
    command[command.index(str(RUNNER_MAIN))] = str(harness)
    (tmp_path / "bin").mkdir()
    subprocess.run([*command, "-I", str(RUNNER_SOURCE_DIR)], check=True, capture_output=True)

    cases = [(gpu, sass, ptx) for gpu in GPUS for n in (1, 2) for sass in itertools.combinations(SASS, n)
             for ptx in (False, True)]
    lines = "".join(f"{gpu} {','.join(sass)} {','.join(code(list(sass), ptx)['ptx']) or '-'}\n"
                    for gpu, sass, ptx in cases)
    out = subprocess.run([str(tmp_path / "bin" / "harness")], input=lines, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    expected = [gpu_code_problem(code(list(sass), ptx), gpu) or "" for gpu, sass, ptx in cases]
    assert len(out) == len(cases) > 500
    mismatches = [(case, got, want) for case, got, want in zip(cases, out, expected) if got != want]
    assert not mismatches, mismatches[:3]
    assert sum(bool(line) for line in out) > len(out) // 3  # the grid has both answers in numbers

"""The package's workspace allocator (ansor_build/backend/workspace.cc), linked into every CPU model.so.

The allocator itself is driven by a C++ harness (tests/tvm/workspace/harness.cc) in the orders kernels use and the
ones they never do: nested buffers, a free out of order, more buffers than its stack tracks, growth, four threads at
once. In a package, tests/tvm/test_thread_pool.py runs a tuned ResNet-style model with it and with TVM's pool.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ansor_build.backend import package_runtime

pytestmark = pytest.mark.tvm

HARNESS = Path(__file__).with_name("workspace") / "harness.cc"


def test_the_allocator_keeps_every_buffer_intact_in_any_order(tmp_path):
    if shutil.which("g++") is None:  # pragma: no cover
        pytest.skip("g++ not available")
    source_dir = package_runtime.SOURCES[1].parent
    binary = tmp_path / "harness"
    subprocess.run(["g++", "-O2", "-pthread", "-I", str(source_dir), str(HARNESS), "-o", str(binary)], check=True,
                   capture_output=True)
    proc = subprocess.run([str(binary)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    counts = dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", proc.stdout))
    assert proc.stdout.startswith("ok")
    # 2 x 2000 rounds in each of 4 threads and the single-thread cases: nearly all from arenas
    assert counts["arena"] > 16000 and counts["heap"] < 40 and counts["grown"] >= 5

"""Every project under examples/ builds for real (in a copy, so the checkout stays clean)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from helpers import REPO

pytestmark = [pytest.mark.scons, pytest.mark.slow]

EXAMPLES = sorted(p.parent.name for p in (REPO / "examples").glob("*/SConstruct"))


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_builds_checks_and_noop_rebuilds(example, tmp_path):
    work = tmp_path / example
    shutil.copytree(REPO / "examples" / example, work, ignore=shutil.ignore_patterns("build", ".sconsign*"))
    env = {**os.environ, "ANSOR_BUILD_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "SCons", "-j2"], cwd=work, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = sorted(work.rglob("*.check.txt"))
    assert checks, "the example declares no AnsorCheck"
    for stamp in checks:
        assert ": OK vs onnxruntime" in stamp.read_text()
    again = subprocess.run([sys.executable, "-m", "SCons", "-q"], cwd=work, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stdout + again.stderr

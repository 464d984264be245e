"""A failed or interrupted SCons rebuild keeps the previous package, as the CLI does (SCons deletes a target's
files before rebuilding it unless they are Precious; the build replaces the directory only once complete)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.scons

PACKAGE = "build/dev/mlp"


def package_files(project) -> dict[str, bytes]:
    root = project.root / PACKAGE
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_failed_rebuild_keeps_previous_package(project):
    project.scons("models=mlp")
    before = package_files(project)
    (project.root / "targets/dev.yaml").write_text("extends: base.yaml\nname: dev\ntoolchain: {flags: [--bogus]}\n")
    proc = project.scons("models=mlp", check=False)
    assert proc.returncode != 0 and "linking model.so failed" in proc.stderr
    assert package_files(project) == before
    assert sorted(p.name for p in (project.root / "build/dev").iterdir() if p.name.startswith(".")) == []
    # Fixed, the next build replaces it (the failed build recorded no signature for it).
    (project.root / "targets/dev.yaml").write_text("extends: base.yaml\nname: dev\nruntime: {threads: 1}\n")
    assert project.built(project.scons("models=mlp")) == [PACKAGE]
    assert json.loads((project.root / PACKAGE / "manifest.json").read_text())["runtime"]["threads"] == 1


def test_interrupted_rebuild_keeps_previous_package(project):
    project.scons("models=mlp")
    before = package_files(project)
    (project.root / "targets/dev.yaml").write_text("extends: base.yaml\nname: dev\nruntime: {threads: 1}\n")
    proc = subprocess.Popen([sys.executable, "-m", "SCons", "-Q", "-j2", "models=mlp"], cwd=project.root,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, "ANSOR_BUILD_CACHE_DIR": str(project.root / ".cache")})
    deadline = time.time() + 60
    while time.time() < deadline and not list((project.root / "build/dev").glob(".mlp.tmp-*")):
        time.sleep(0.05)  # interrupt once the build is under way (its staging directory exists)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground process group
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0, out
    assert package_files(project) == before, out
    assert [p.name for p in (project.root / "build/dev").iterdir() if p.name.startswith(".")] == []

"""The SCons tuning step: tune once, reuse after, no recompiles for mode changes or unrelated records."""

from __future__ import annotations

import json
import os

import pytest

from ansor_build import zoo
from helpers import run_cli

pytestmark = [pytest.mark.scons, pytest.mark.tuning]


def test_tuning_step_reuse_and_signature(project):
    first = project.scons("tune=incremental", "models=mlp")
    assert project.tuned(first) == ["build/dev/mlp.records.json"]
    assert project.built(first) == ["build/dev/mlp"]
    records = json.loads((project.root / "build/dev/mlp.records.json").read_text())
    assert len(records["tasks"]) == 3 and records["records"]
    manifest = json.loads((project.root / "build/dev/mlp/manifest.json").read_text())
    assert manifest["tuning"]["records"] == len(records["records"])
    assert sorted(p.name for p in (project.root / "tuning").glob("*/*.jsonl")) == \
        sorted(f"{k}.jsonl" for k in records["tasks"])

    # The tuning step's own writes re-run it once (nothing left to tune: the forbid switch holds, no recompile);
    # after that the build is a no-op.
    os.environ["ANSOR_BUILD_FORBID_TUNING"] = "1"
    try:
        second = project.scons("tune=incremental", "models=mlp")
        assert project.built(second) == []
        assert project.scons("-q", "tune=incremental", "models=mlp", check=False).returncode == 0

        # A mode change re-runs the tuning step but recompiles nothing: the applied records are the same.
        reuse = project.scons("tune=reuse", "models=mlp")
        assert project.tuned(reuse) == ["build/dev/mlp.records.json"] and project.built(reuse) == []

        # Records of a model this project does not build leave it untouched.
        os.environ.pop("ANSOR_BUILD_FORBID_TUNING")
        other = zoo.write_model("mlp", project.root / "other.onnx", variant=2)
        run_cli("tune", other, "--target", project.root / "targets/dev.yaml", "--tuning-dir",
                project.root / "tuning", "--records-out", project.root / "other.json", check=True)
        assert len(list((project.root / "tuning").glob("*/*.jsonl"))) == 4
        assert project.scons("-q", "tune=reuse", "models=mlp", check=False).returncode == 0

        # Switching tuning off rebuilds the package without records.
        off = project.scons("tune=off", "models=mlp")
        assert project.built(off) == ["build/dev/mlp"]
        manifest = json.loads((project.root / "build/dev/mlp/manifest.json").read_text())
        assert manifest["tuning"]["records"] == 0
    finally:
        os.environ.pop("ANSOR_BUILD_FORBID_TUNING", None)


def test_bad_tuning_mode_is_a_one_line_error(project):
    proc = project.scons("tune=fast", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "ANSOR_TUNE: 'fast' is not allowed (expected one of: off, reuse, incremental, full)" in proc.stderr

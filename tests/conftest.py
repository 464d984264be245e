"""Shared fixtures. Tiers (by directory): unit (no TVM), tvm (real compiles), scons (real SCons builds)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory) -> Path:
    """Every zoo model (variant 0) written once per test session."""
    from ansor_build import zoo

    out = tmp_path_factory.mktemp("zoo")
    for name in zoo.NAMES:
        zoo.write_model(name, out / f"{name}.onnx")
    return out

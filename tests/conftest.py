"""Shared fixtures. Tiers (by directory): unit (no TVM), tvm (real compiles), scons (real SCons builds),
cross (cross-compiled ARM and GPU packages)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import HOST_TARGET


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Runner binaries and cost models of this session live in a fresh cache (inherited by subprocesses)."""
    import os

    previous = os.environ.get("ANSOR_BUILD_CACHE_DIR")
    os.environ["ANSOR_BUILD_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("ANSOR_BUILD_CACHE_DIR", None)
    else:
        os.environ["ANSOR_BUILD_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory) -> Path:
    """Every zoo model (variant 0) written once per test session."""
    from ansor_build import zoo

    out = tmp_path_factory.mktemp("zoo")
    for name in zoo.NAMES:
        zoo.write_model(name, out / f"{name}.onnx")
    return out


@pytest.fixture(scope="session")
def packages(zoo_dir, tmp_path_factory):
    """name -> package directory, each built with `build_package` for the host AVX2 target (tvm and cross tiers)."""
    from ansor_build import zoo
    from ansor_build.build import build_package

    out = tmp_path_factory.mktemp("packages")
    return {name: build_package(zoo_dir / f"{name}.onnx", HOST_TARGET, out / name).package for name in zoo.NAMES}

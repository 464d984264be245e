"""Fixtures of the TVM tier: packages of every zoo model, built once per session."""

from __future__ import annotations

import pytest

from helpers import HOST_TARGET


@pytest.fixture(scope="session")
def packages(zoo_dir, tmp_path_factory):
    """name -> package directory, each built with `build_package` for the host AVX2 target."""
    from ansor_build import zoo
    from ansor_build.build import build_package

    out = tmp_path_factory.mktemp("packages")
    return {name: build_package(zoo_dir / f"{name}.onnx", HOST_TARGET, out / name).package for name in zoo.NAMES}

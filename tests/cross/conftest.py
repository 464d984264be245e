"""Fixtures of the cross tier: packages for ARM and NVIDIA GPU presets, built on demand once per session.

Build times and cross-target differences are collected and printed at the end of the run (the numbers the
README's cross-compilation table reports).
"""

from __future__ import annotations

import time

import pytest

from cross_tools import BUILD_TIMES, DIFFS
from helpers import PRESETS


@pytest.fixture(scope="session")
def cross_package(zoo_dir, tmp_path_factory):
    """`cross_package(preset, model)` -> package directory of the zoo model built for targets/PRESET.yaml."""
    from ansor_build.build import build_package

    root = tmp_path_factory.mktemp("cross")
    built = {}

    def get(preset: str, model: str):
        if (preset, model) not in built:
            started = time.perf_counter()
            result = build_package(zoo_dir / f"{model}.onnx", PRESETS / f"{preset}.yaml", root / preset / model)
            BUILD_TIMES[(preset, model)] = time.perf_counter() - started
            built[(preset, model)] = result.package
        return built[(preset, model)]

    return get


def pytest_terminal_summary(terminalreporter):
    if BUILD_TIMES:
        terminalreporter.section("cross-compiled package build times (s, this machine)")
        for (preset, model), seconds in sorted(BUILD_TIMES.items()):
            terminalreporter.write_line(f"{preset:<22} {model:<12} {seconds:6.1f}")
    if DIFFS:
        terminalreporter.section("max |difference| between targets")
        for name, value in sorted(DIFFS.items()):
            terminalreporter.write_line(f"{name:<40} {value:.2e}")

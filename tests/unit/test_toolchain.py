"""Finding a target's tools: one-line errors naming the file, the key and the package to install."""

from __future__ import annotations

import pytest

from ansor_build import toolchain
from ansor_build.errors import InputError
from ansor_build.target import load_target
from helpers import PRESETS


@pytest.fixture
def no_tools(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))


def test_missing_cross_compiler_names_the_debian_package(no_tools):
    target = load_target(PRESETS / "aarch64.yaml")
    with pytest.raises(InputError) as info:
        toolchain.find_compiler(target)
    assert str(info.value) == (f"{target.path}: toolchain.cxx: C++ compiler 'aarch64-linux-gnu-g++' not found on "
                               f"PATH; install it with: apt-get install g++-aarch64-linux-gnu")


def test_missing_emulator_names_the_debian_package(no_tools):
    target = load_target(PRESETS / "aarch64.yaml")
    with pytest.raises(InputError, match="emulator 'qemu-aarch64' not found on PATH; install it with: apt-get "
                                         "install qemu-user"):
        toolchain.emulator_command(target)


def test_missing_nvcc_says_how_to_get_it(no_tools):
    with pytest.raises(InputError, match="toolchain.nvcc: CUDA compiler 'nvcc' not found on PATH; install it with: "
                                         "the CUDA 13 toolkit"):
        toolchain.find_nvcc(load_target(PRESETS / "cuda-sm_80.yaml"))


def test_host_packages_need_no_emulator(no_tools):
    assert toolchain.emulator_command(load_target(PRESETS / "x86_64-avx2.yaml")) is None


def test_foreign_target_without_emulator(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("extends: aarch64\ntoolchain: {emulator: []}\n")
    with pytest.raises(InputError, match="toolchain.emulator: not set; aarch64 packages cannot run"):
        toolchain.emulator_command(load_target(path))

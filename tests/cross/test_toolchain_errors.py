"""A missing cross compiler, nvcc, emulator or PyPI gives one line saying what to install; no package is left."""

from __future__ import annotations

import os

import pytest

from helpers import PRESETS, one_line_error, run_cli

pytestmark = pytest.mark.cross


def _build(zoo_dir, tmp_path, target_text, env=None):
    target = tmp_path / "t.yaml"
    target.write_text(target_text)
    proc = run_cli("build", zoo_dir / "mlp.onnx", "--target", target, "-o", tmp_path / "pkg", env=env)
    return target, one_line_error(proc)


@pytest.mark.parametrize("preset, compiler, package", [
    ("aarch64", "aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu"),
    ("armv7", "arm-linux-gnueabihf-g++", "g++-arm-linux-gnueabihf"),
    ("jetson-orin", "aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu"),
])
def test_missing_cross_compiler_names_the_debian_package(zoo_dir, tmp_path, preset, compiler, package):
    empty = tmp_path / "empty-path"
    empty.mkdir()
    # The preset's own compiler, looked up on a PATH that lacks it (nvcc too, for the Jetson preset).
    target, line = _build(zoo_dir, tmp_path, f"extends: {PRESETS / preset}.yaml\n", env={"PATH": str(empty)})
    assert f"{target}: toolchain.cxx: C++ compiler '{compiler}' not found on PATH; install it with: apt-get install " \
           f"{package}" in line
    assert not (tmp_path / "pkg").exists()


def test_missing_nvcc_says_how_to_install_it(zoo_dir, tmp_path):
    target, line = _build(zoo_dir, tmp_path, "extends: cuda-sm_80\ntoolchain: {nvcc: no-such-nvcc}\n")
    assert line.startswith(f"ansor-build: error: {target}: toolchain.nvcc: CUDA compiler 'no-such-nvcc' not found "
                           f"on PATH; install it with: the CUDA 13 toolkit")
    assert not (tmp_path / "pkg").exists()


def test_missing_emulator_names_the_debian_package(cross_package, zoo_dir, tmp_path):
    package = cross_package("aarch64", "mlp")
    empty = tmp_path / "empty-path"
    empty.mkdir()
    line = one_line_error(run_cli("check", package, "--model", zoo_dir / "mlp.onnx", env={"PATH": str(empty)}))
    assert "emulator 'qemu-aarch64' not found on PATH; install it with: apt-get install qemu-user" in line


def test_pypi_unreachable_is_one_line_naming_the_wheel(zoo_dir, tmp_path):
    env = {"ANSOR_BUILD_CACHE_DIR": str(tmp_path / "fresh-cache"), "PIP_CONFIG_FILE": os.devnull,
           "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_RETRIES": "0", "PIP_TIMEOUT": "2"}
    _, line = _build(zoo_dir, tmp_path, "extends: aarch64\n", env=env)
    assert "downloading the aarch64 wheel of apache-tvm failed (exit code 1)" in line
    assert "--platform manylinux_2_28_aarch64" in line
    assert not (tmp_path / "pkg").exists()


def test_host_runtime_for_another_arch_is_refused(zoo_dir, tmp_path):
    target, line = _build(zoo_dir, tmp_path, "extends: aarch64\nruntime: {libs: host}\n")
    assert f"{target}: runtime.libs: 'host' libraries are x86_64 code, the target runs aarch64" in line


def test_failing_nvcc_is_one_line_with_its_log(zoo_dir, tmp_path):
    fake = tmp_path / "bin" / "nvcc-broken"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'tvm_kernels.cu(1): error: this nvcc always fails' >&2\nexit 1\n")
    fake.chmod(0o755)
    target, line = _build(zoo_dir, tmp_path, f"extends: cuda-sm_80\ntoolchain: {{nvcc: {fake}}}\n"
                                             "runtime: {libs: none}\n")
    assert "compiling CUDA device code failed" in line and "error: this nvcc always fails" in line
    log = tmp_path / "pkg.link.log"
    assert f"full log: {log}" in line and "Compilation error" in log.read_text()
    assert not (tmp_path / "pkg").exists()

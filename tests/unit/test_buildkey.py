"""The build key's values (no TVM): what is in them and what is deliberately not."""

from __future__ import annotations

from ansor_build import buildkey
from ansor_build.target import load_target
from helpers import HOST_TARGET, PRESETS


def test_budgets_are_in_the_tuning_key_except_in_reuse_mode():
    target = load_target(HOST_TARGET)
    assert buildkey.tuning_text(target, "reuse", "--trials 8") == buildkey.tuning_text(target, "reuse", "")
    assert buildkey.tuning_text(target, "incremental", "--trials 8") != buildkey.tuning_text(target, "incremental", "")
    assert '"num-cores":' in buildkey.tuning_text(target, "reuse", "")  # the effective target: this machine's cores


def test_host_tools_name_the_compilers_that_write_the_package(tmp_path):
    text = buildkey.host_tools_text(load_target(HOST_TARGET))
    assert text.startswith(f"key-schema={buildkey.KEY_SCHEMA}; cxx=") and "nvcc=" not in text
    assert "nvcc=" in buildkey.host_tools_text(load_target(PRESETS / "cuda-sm_80.yaml"))
    missing = tmp_path / "t.yaml"
    missing.write_text("extends: x86_64-avx2\ntoolchain: {cxx: no-such-g++}\n")
    assert buildkey.host_tools_text(load_target(missing)).endswith("cxx=no-such-g++ (not found)")


def test_versions_and_files():
    assert buildkey.versions_text().startswith("ansor-build=") and "apache-tvm=" in buildkey.versions_text()
    target = load_target(HOST_TARGET)
    assert buildkey.target_files(target)[0] == HOST_TARGET and len(buildkey.target_files(target)) == 2
    assert {p.name for p in buildkey.source_files()} >= {"ansor_runner.cc", "build.py", "parallel_pool.cc",
                                                          "workspace.cc", "package_runtime.py"}

"""Which PyPI wheels provide a device's runtime libraries, and the cache key written down for them (no download)."""

from __future__ import annotations

import pytest

from ansor_build.errors import InputError
from ansor_build.package import wheels


def test_platform_tags_cover_every_manylinux_tag_pip_must_match():
    tags = wheels.platform_tags("aarch64")
    assert tags[0] == "manylinux_2_28_aarch64" and "manylinux2014_aarch64" in tags  # TVM 2_28, cudart 2014


def test_no_wheels_for_armv7():
    with pytest.raises(InputError, match="PyPI has no TVM wheels for armv7l"):
        wheels.platform_tags("armv7l")


def test_versions_are_the_installed_tvm_and_the_pinned_cuda_runtime():
    from importlib import metadata

    assert wheels.dist_version("apache-tvm") == metadata.version("apache-tvm")
    assert wheels.dist_version("apache-tvm-ffi") == metadata.version("apache-tvm-ffi")
    assert wheels.dist_version("nvidia-cuda-runtime") == wheels.CUDA_RUNTIME_VERSION


def test_key_inputs_are_readable_and_change_with_the_arch():
    a = dict(wheels.key_inputs("apache-tvm", "0.27.0.post1", "aarch64"))
    b = dict(wheels.key_inputs("apache-tvm", "0.27.0.post1", "x86_64"))
    assert a["requirement"] == "apache-tvm==0.27.0.post1" and a["schema"] == str(wheels.SCHEMA)
    assert a["platforms"] != b["platforms"]


def test_every_packaged_runtime_library_has_a_wheel():
    from ansor_build.package.layout import RUNTIME_LIBS

    assert {name for names in RUNTIME_LIBS.values() for name in names} <= set(wheels.LIBRARIES)

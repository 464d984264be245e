"""optimize.fast_math: exp, erf, tanh and softmax as TVM's polynomial approximations, or libm's."""

from __future__ import annotations

import pytest

from ansor_build.build import prepare
from ansor_build.target import load_target
from helpers import HOST_TARGET

pytestmark = pytest.mark.tvm


def _task_names(zoo_dir, target_path) -> list[str]:
    return [t.name for t in prepare(zoo_dir / "transformer.onnx", load_target(target_path), tuned=True).tasks]


def test_transformer_gelu_and_softmax_use_fast_math_by_default(zoo_dir):
    names = _task_names(zoo_dir, HOST_TARGET)
    assert any("fast_erf" in n for n in names) and any(n.startswith("fast_softmax") for n in names), names


def test_fast_math_off_keeps_libm_calls(zoo_dir, tmp_path):
    exact = tmp_path / "exact.yaml"
    exact.write_text(f"extends: {HOST_TARGET}\noptimize: {{fast_math: false}}\n")
    names = _task_names(zoo_dir, exact)
    assert not any("fast_" in n for n in names), names
    assert any("_erf_" in n for n in names) and any(n.startswith("softmax") for n in names), names

"""Fixtures of the tuning tier: a small-budget target so real MetaSchedule runs take seconds."""

from __future__ import annotations

import pytest

FAST = """extends: x86_64-avx2
name: fast
tvm: {num-cores: 2}
runtime: {threads: 2}
tuning: {trials_per_task: 8, trials_per_iter: 8, population: 32}
"""


@pytest.fixture
def fast_target(tmp_path):
    path = tmp_path / "fast.yaml"
    path.write_text(FAST)
    return path

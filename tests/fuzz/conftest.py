"""The fuzz tier (`-m fuzz`): hostile inputs made by mutating valid ones (ONNX models, target YAML, tuning records,
package files), fed to the library in-process (many cases, cheap) and to the CLI in fresh processes (fewer cases,
end to end). Every case must end in success or in one `ansor-build: error:` line: no traceback, no signal death,
nothing written outside the output directory.

Hypothesis drives the mutations. CI runs the `ci` profile: derandomized (the same cases every run, so a red CI is a
real regression, not a lucky draw) and no example database. `ANSOR_FUZZ=explore` draws new random cases, ten times
as many (`ANSOR_FUZZ_SCALE` sets the factor); a failing case is printed with the seed to reproduce it.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

_SCALE = float(os.environ.get("ANSOR_FUZZ_SCALE", "10" if os.environ.get("ANSOR_FUZZ") == "explore" else "1"))
_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                                     HealthCheck.data_too_large, HealthCheck.filter_too_much], database=None)
settings.register_profile("ci", derandomize=True, **_COMMON)
settings.register_profile("explore", derandomize=False, **_COMMON)
settings.load_profile("explore" if os.environ.get("ANSOR_FUZZ") == "explore" else "ci")


def examples(n: int) -> int:
    """The number of cases a property runs, scaled by ANSOR_FUZZ_SCALE."""
    return max(1, int(n * _SCALE))


@pytest.fixture(scope="session")
def mlp_model(zoo_dir):
    return zoo_dir / "mlp.onnx"


@pytest.fixture(scope="session")
def mlp_package(mlp_model, tmp_path_factory):
    """One real package (the zoo MLP for the host), built once; tests copy it before damaging it."""
    from ansor_build.build import build_package
    from helpers import HOST_TARGET

    return build_package(mlp_model, HOST_TARGET, tmp_path_factory.mktemp("fuzz") / "mlp").package

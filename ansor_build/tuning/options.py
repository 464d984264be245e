"""Tuning mode and budgets: from the target's `tuning:` section, overridden per build (CLI flags, SCons vars)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

MODES = ("off", "reuse", "incremental", "full")
DEFAULT_TRIALS_PER_TASK = 64
FORBID_ENV = "ANSOR_BUILD_FORBID_TUNING"


@dataclass(frozen=True)
class TuningOptions:
    """How one build uses the tuning database.

    mode: off (default schedules, no database), reuse (apply records, never measure: CI/release),
    incremental (tune only new and under-tuned tasks), full (tune every task again).
    trials: cap on measured trials for this build (None: trials_per_task x tasks to tune).
    trials_per_task: a task with at least this many measured trials is fully tuned.
    time_budget: wall-clock seconds for tuning (None: unlimited).
    """

    mode: str = "off"
    tuning_dir: Path | None = None
    trials: int | None = None
    trials_per_task: int = DEFAULT_TRIALS_PER_TASK
    time_budget: float | None = None
    trials_per_iter: int = 32
    population: int = 512

    def __post_init__(self):
        if self.tuning_dir is not None and not isinstance(self.tuning_dir, Path):
            object.__setattr__(self, "tuning_dir", Path(self.tuning_dir))  # frozen: normalize str paths once
        if self.mode not in MODES:
            raise InputError(f"tuning mode '{self.mode}' is not allowed (expected one of: {', '.join(MODES)})")
        if self.mode != "off" and self.tuning_dir is None:
            raise InputError(f"tuning mode '{self.mode}' needs a tuning directory (--tuning-dir DIR, "
                             f"SCons: ANSOR_TUNING_DIR)")
        for name in ("trials", "trials_per_task", "time_budget"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise InputError(f"tuning {name.replace('_', '-')}: {value} is negative")

    @property
    def may_measure(self) -> bool:
        return self.mode in ("incremental", "full")

    @staticmethod
    def forbidden() -> bool:
        """ANSOR_BUILD_FORBID_TUNING=1: any build that would measure a trial fails (proves reuse)."""
        return os.environ.get(FORBID_ENV, "") not in ("", "0")


def resolve_options(target, *, mode: str | None = None, tuning_dir=None, trials: int | None = None,
                    trials_per_task: int | None = None, time_budget: float | None = None) -> TuningOptions:
    """Per-build values win over the target's `tuning:` section, which wins over the defaults."""
    section = target.tuning
    return TuningOptions(
        mode=mode or "off",
        tuning_dir=Path(tuning_dir) if tuning_dir else None,
        trials=trials if trials is not None else section.get("trials"),
        trials_per_task=trials_per_task if trials_per_task is not None else
        section.get("trials_per_task", DEFAULT_TRIALS_PER_TASK),
        time_budget=time_budget if time_budget is not None else section.get("time_budget"),
        trials_per_iter=section.get("trials_per_iter", 32),
        population=section.get("population", 512),
    )


"""Incremental tuning: a per-target record store, a plan of what to tune, and the options that drive it.

Nothing here imports TVM; measuring and applying records is in `ansor_build.backend.tune`.
"""

from .options import MODES, TuningOptions
from .plan import Plan, TaskPlan, make_plan
from .store import TuningStore, open_store

__all__ = ["MODES", "Plan", "TaskPlan", "TuningOptions", "TuningStore", "make_plan", "open_store"]

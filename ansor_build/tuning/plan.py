"""The plan of a build: which tasks reuse records, which are new, which are under-tuned, which get tuned."""

from __future__ import annotations

from dataclasses import dataclass

from .options import TuningOptions
from .store import TuningStore


@dataclass
class TaskPlan:
    """One task of the model: its key, TVM's name, occurrences, and what the build does with it."""

    key: str
    name: str
    weight: int
    status: str  # reused | new | under-tuned | default (mode off)
    records: int
    trials: int
    best_us: float | None
    tune: bool  # this build measures trials for it

    def as_dict(self) -> dict:
        return {"key": self.key, "name": self.name, "weight": self.weight, "status": self.status,
                "records": self.records, "trials": self.trials, "best_us": self.best_us, "tune": self.tune}


@dataclass
class Plan:
    mode: str
    tasks: list[TaskPlan]

    @property
    def to_tune(self) -> list[TaskPlan]:
        return [t for t in self.tasks if t.tune]

    def count(self, status: str) -> int:
        return sum(1 for t in self.tasks if t.status == status)

    def line(self) -> str:
        """E.g. `9 tasks: 7 reused, 1 new, 1 under-tuned; tuning 2` (the line every build prints)."""
        if self.mode == "off":
            return f"{len(self.tasks)} tasks: tuning off (default schedules)"
        parts = [f"{self.count(s)} {s}" for s in ("reused", "new", "under-tuned", "failed") if self.count(s)]
        text = f"{len(self.tasks)} tasks: {', '.join(parts) or 'none'}"
        if self.mode == "reuse":
            missing = self.count("new") + self.count("under-tuned")
            return text + (f"; reuse mode: {missing} use default schedules or fewer trials" if missing else "")
        return text + f"; {len(self.to_tune)} to tune"

    def as_dict(self) -> dict:
        return {"mode": self.mode, "summary": self.line(), "tasks": [t.as_dict() for t in self.tasks]}


def make_plan(tasks, store: TuningStore | None, options: TuningOptions) -> Plan:
    """Classify each task by its records: reused (tuned enough for trials_per_task, `Entry.complete`, and a valid
    record), new, under-tuned."""
    plans = []
    for task in tasks:
        if store is None or options.mode == "off":
            plans.append(TaskPlan(task.key, task.name, task.weight, "default", 0, 0, None, False))
            continue
        entry = store.entry(task.key)
        if not entry.records and not entry.trials:
            status = "new"
        elif entry.complete(options.trials_per_task):
            # fully tuned; "failed" when no trial ever ran (default schedule; only `full` mode tries again)
            status = "reused" if entry.records else "failed"
        else:
            status = "under-tuned"
        tune = options.mode == "full" or (options.mode == "incremental" and status in ("new", "under-tuned"))
        plans.append(TaskPlan(task.key, task.name, task.weight, status, len(entry.records), entry.trials,
                              entry.best_us, tune))
    return Plan(options.mode, plans)

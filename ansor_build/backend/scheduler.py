"""The task scheduler of a tuning run: MetaSchedule's search strategies, builder, runner, database and cost model,
driven one batch at a time by us.

Why not MetaSchedule's `GradientBased` scheduler (C++ `TaskSchedulerNode::Tune`): its first round generates and
sends a batch for *every* task before it joins any, and measure callbacks (our store writes, progress, budgets) run
only at a join. On a 42-task model that round is 20+ minutes of evolutionary search (20-70 s per task on 2 cores)
in which nothing reaches the store, and a time budget ending inside it dropped every batch measured in the
background (32 of ~1,200 measured candidates were kept). It also measures one task's batch while it searches the
next on the same cores, which skews the timings. Here:

- each batch is searched, built, measured and stored before the next search starts: at most one batch is ever in
  flight, and a measured batch is in the store within seconds of its measurement;
- the first round visits the tasks in order of expected gain (weight x latency of the default schedule, or of the
  best record of a task tuned before); after it,
  Ansor's gradient picks the next task (the formula of MetaSchedule's GradientBased: alpha 0.2, window 3);
- stops (time budget, trial budget, Ctrl-C/SIGTERM) are checked between steps and inside the search (the cost
  model's `predict`, called 5 times per search): a search may be abandoned, a measured batch never is;
- the last batch is cut to what fits the time and trial budgets (the seconds a measured candidate costs are learnt
  from the batches before it).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from typing import Callable

from .. import interrupt

log = logging.getLogger(__name__)

ALPHA, WINDOW = 0.2, 3  # MetaSchedule GradientBased's defaults (Ansor's task scheduler)
DEFAULTS_CHUNK = 8  # default schedules built and timed per step (a stop is checked between steps)


class SearchStopped(Exception):
    """Raised from the cost model inside a search when tuning must end; nothing of that batch was measured."""


@dataclass
class Clock:
    """The run's budgets: wall-clock seconds since `started` and measured trials, and what a candidate costs."""

    started: float
    seconds: float | None  # time budget (None: none)
    trials: int  # trial budget of this run
    pace: float | None = None  # seconds a measured candidate costs (build + run), learnt
    measured: int = 0  # candidates measured so far in this run

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def left(self) -> float | None:
        return None if self.seconds is None else self.seconds - self.elapsed()

    def learn(self, seconds: float, candidates: int) -> None:
        if candidates > 0:
            now = seconds / candidates
            self.pace = now if self.pace is None else 0.5 * self.pace + 0.5 * now

    def fits(self, wanted: int) -> int:
        """How many of `wanted` candidates can still be measured within both budgets."""
        wanted = min(wanted, max(self.trials - self.measured, 0))
        left = self.left()
        if left is None or self.pace is None:
            return wanted if left is None or left > 0 else 0
        return max(min(wanted, int(left / (self.pace * 1.1))), 0)

    def stop_reason(self) -> str:
        """Why tuning must end now ("" if it may go on)."""
        if interrupt.requested():
            return "interrupted"
        left = self.left()
        if left is not None and left <= 0:
            return "time budget"
        return ""


@dataclass
class Task:
    """One task in the scheduler: its context, weight, and the best latency after each batch (the gradient's input)."""

    index: int
    ctx: object
    weight: float
    gain: float  # expected gain, for the first round: weight x default latency
    started: bool = False
    ended: bool = False
    generated: int = 0
    history: list[float] = field(default_factory=list)  # best seconds after each batch (1e10: none ran)


def gradient(task: Task) -> float:
    """Ansor's task gradient (MetaSchedule GradientBased): how fast the task's weighted latency is falling (over the
    last WINDOW batches), mixed with an optimistic forward estimate; -1e9 when no candidate of it ran yet."""
    n = len(task.history)
    if n == 0 or task.history[-1] >= 1e9:
        return -1e9
    best = task.history[-1]
    backward = (task.history[n - 1 - WINDOW] - best) / WINDOW if n >= 1 + WINDOW else 0.0
    return (ALPHA * backward + (1 - ALPHA) * best / n) * task.weight


class Scheduler:
    """Drives the rounds (see the module docstring). `on_batch(index, candidates, builder_results, runner_results)`
    stores one measured batch and returns a reason to stop ("" to go on); `on_phase(text)` says what runs now."""

    def __init__(self, tasks: list[Task], builder, runner, database, cost_model, clock: Clock, per_task: int,
                 per_iter: int, on_batch: Callable, on_phase: Callable[[str], None], loggers: list | None = None):
        self.tasks, self.builder, self.runner = tasks, builder, runner
        self.database, self.cost_model, self.clock = database, cost_model, clock
        self.per_task, self.per_iter = per_task, per_iter
        self.on_batch, self.on_phase = on_batch, on_phase
        self.loggers = loggers or [log] * len(tasks)
        self.random = random.Random(0)
        self.stopped = ""
        self._reserve = 0.0

    # -- the search guard: the cost model's predict calls it -------------------------------------------------------
    def guard(self) -> None:
        """Inside a search: raise SearchStopped when tuning must end, or when too little time is left to measure
        even a quarter batch of what the search would find."""
        reason = self.clock.stop_reason()
        left = self.clock.left()
        if not reason and left is not None and left < self._reserve:
            reason = "time budget"
        if reason:
            self.stopped = reason
            raise SearchStopped(reason)

    # -- the loop ---------------------------------------------------------------------------------------------------
    def run(self) -> str:
        """Tune until the budgets are spent, every task has ended, or a stop; returns why it stopped early ("" when
        it ran to its end)."""
        try:
            while True:
                reason = self.clock.stop_reason()
                if reason:
                    self.stopped = reason
                    break
                if self.clock.measured >= self.clock.trials:
                    break  # the trial budget is spent: the run's normal end
                task = self._next()
                if task is None:
                    break
                reason = self._step(task)
                if reason:
                    self.stopped = reason
                    break
        finally:
            for task in self.tasks:
                if task.started:
                    try:
                        task.ctx.post_tuning()
                    except Exception as err:  # noqa: BLE001 - cleanup only; what was measured is stored
                        log.debug("post_tuning of task %d: %s", task.index, err)
        return self.stopped

    def _next(self) -> Task | None:
        alive = [task for task in self.tasks if not task.ended]
        if not alive:
            return None
        fresh = [task for task in alive if not task.started]
        if fresh:  # first round: most expected gain first (stable: task order breaks ties)
            return max(fresh, key=lambda task: (task.gain, -task.index))
        grads = [gradient(task) for task in alive]
        if max(grads) == min(grads):
            return alive[self.random.randrange(len(alive))]
        return alive[grads.index(max(grads))]

    def _start(self, task: Task) -> None:
        """Generate the task's design space and prepare its search (done when the task is first picked, so the
        first batch of the most promising task is measured without waiting for every task's space)."""
        ctx = task.ctx
        self.on_phase(f"generating the search space of {ctx.task_name}")
        spaces = ctx.generate_design_space()
        self.loggers[task.index].info("%d design space(s) generated", len(spaces))
        ctx.pre_tuning(self.per_task, self.per_iter, spaces, self.database, self.cost_model)
        task.started = True

    def _step(self, task: Task) -> str:
        """One batch of one task: search, build, measure, store. Returns a reason to stop ("" to go on)."""
        from tvm.s_tir import meta_schedule as ms

        if not task.started:
            self._start(task)
        if task.generated >= self.per_task:
            task.ended = True
            return ""
        ctx = task.ctx
        pace = self.clock.pace or 0.0
        self._reserve = pace * max(self.per_iter // 4, 1)
        self.on_phase(f"searching {ctx.task_name} (task {task.index + 1} of {len(self.tasks)})")
        try:
            candidates = ctx.generate_measure_candidates()
        except Exception:  # noqa: BLE001 - the guard's SearchStopped comes back wrapped by the FFI
            if self.stopped:
                return self.stopped
            raise
        if candidates is None or len(candidates) == 0:
            task.ended = True
            self.loggers[task.index].info("search ended: no new candidates")
            return ""
        asked = min(self.per_iter, self.per_task - task.generated)
        task.generated += len(candidates)
        exhausted = len(candidates) < asked
        fit = self.clock.fits(len(candidates))
        if fit == 0:
            return self.clock.stop_reason() or "time budget"  # no time left to measure one candidate
        candidates = list(candidates)[:fit]
        self.on_phase(f"measuring {len(candidates)} candidates of {ctx.task_name}")
        began = time.perf_counter()
        built = self.builder.build([ms.builder.BuilderInput(c.sch.mod, ctx.target) for c in candidates])
        device = device_of(ctx.target)
        runnable = [i for i, b in enumerate(built) if b.error_msg is None]
        futures = self.runner.run([ms.runner.RunnerInput(built[i].artifact_path, device, candidates[i].args_info)
                                   for i in runnable])
        results = [ms.runner.RunnerResult(None, b.error_msg) for b in built]
        for i, future in zip(runnable, futures):
            results[i] = future.result()
        self.clock.learn(time.perf_counter() - began, len(candidates))
        self.clock.measured += len(candidates)
        try:
            ctx.notify_runner_results(candidates, results)
            self._commit(task, candidates, built, results)
        finally:
            for b in built:
                if b.artifact_path:
                    ms.utils.remove_build_dir(b.artifact_path)
        runs = [_seconds(r) for b, r in zip(built, results) if b.error_msg is None]
        best = min([*(task.history[-1:] or [1e10]), *runs])
        task.history.append(best)
        self.loggers[task.index].info("batch of %d: %d ran, best %.1f us", len(candidates),
                                      sum(1 for s in runs if s < 1e9), best * 1e6)
        reason = self.on_batch(task.index, candidates, built, results, exhausted)
        if exhausted:
            task.ended = True
        return reason

    def _commit(self, task: Task, candidates, built, results) -> None:
        """What MetaSchedule's AddToDatabase and UpdateCostModel callbacks do: the search picks its next population
        from the database's best, and the cost model learns from every candidate that built."""
        from tvm.s_tir import meta_schedule as ms

        ctx = task.ctx
        workload = self.database.commit_workload(ctx.mod)
        for candidate, result in zip(candidates, results):
            run_secs = list(result.run_secs) if result.run_secs else [1e10]
            self.database.commit_tuning_record(ms.database.TuningRecord(candidate.sch.trace, workload, run_secs,
                                                                        ctx.target, candidate.args_info))
        pairs = [(c, r) for c, b, r in zip(candidates, built, results)
                 if b.error_msg is None and (r.error_msg is not None or (r.run_secs and _seconds(r) > 0))]
        if pairs:
            self.cost_model.update(ctx, [c for c, _ in pairs], [r for _, r in pairs])


def device_of(target) -> str:
    """The runner's device name for a TVM target."""
    return "cuda" if target.kind.name == "cuda" else "cpu"


def _seconds(result) -> float:
    """The mean of a runner result's run times; 1e10 when it failed."""
    if result.error_msg is not None or not result.run_secs:
        return 1e10
    secs = [float(s) for s in result.run_secs]
    return sum(secs) / len(secs)


def guarded_cost_model(scheduler_ref: Callable[[], Scheduler | None], **kwargs):
    """An XGBoost cost model whose `predict` first asks the scheduler's guard whether tuning must end (the one hook
    inside MetaSchedule's evolutionary search that runs Python)."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms

    @derived_object
    class GuardedXGBModel(ms.cost_model.XGBModel._cls):
        def predict(self, context, candidates):
            scheduler = scheduler_ref()
            if scheduler is not None:
                scheduler.guard()
            return super().predict(context, candidates)

    return GuardedXGBModel(**kwargs)


def measure_defaults(tasks: list[Task], states, builder, runner, clock: Clock, on_phase) -> tuple[list[str], int]:
    """Latency of each task's unscheduled code: the "default" column and the first round's order. Measured
    DEFAULTS_CHUNK tasks at a time, so a stop or the time budget is honoured within one chunk; a task whose default
    was not measured only lacks that number. Returns the run errors and how many built tasks ran."""
    from tvm.s_tir import meta_schedule as ms

    errors, ran = [], 0
    for start in range(0, len(tasks), DEFAULTS_CHUNK):
        chunk = tasks[start:start + DEFAULTS_CHUNK]
        left = clock.left()
        if clock.stop_reason() or (left is not None and clock.pace is not None and left < clock.pace * len(chunk)):
            break  # a chunk that would end past the time budget is not started (slow defaults: ~1 s a task)
        on_phase(f"timing default schedules ({start}/{len(tasks)} tasks)")
        began = time.perf_counter()
        built = builder.build([ms.builder.BuilderInput(t.ctx.mod, t.ctx.target) for t in chunk])
        runnable = [(t, b) for t, b in zip(chunk, built) if b.error_msg is None]
        inputs = [ms.runner.RunnerInput(b.artifact_path, device_of(t.ctx.target),
                                        ms.arg_info.ArgInfo.from_entry_func(t.ctx.mod, remove_preproc=True))
                  for t, b in runnable]
        for (task, b), future in zip(runnable, runner.run(inputs)):
            result = future.result()
            if result.error_msg is None and result.run_secs:
                state = states[task.index]
                state.default_us = _seconds(result) * 1e6
                # What the task costs the model now: its best record when it has one (an under-tuned task).
                task.gain = task.weight * min(state.default_us, state.best_us or state.default_us)
            else:
                errors.append(result.error_msg or "no run time")
        for b in built:
            if b.artifact_path:
                ms.utils.remove_build_dir(b.artifact_path)
        ran += len(runnable)
        clock.learn(time.perf_counter() - began, len(chunk))
    return errors, ran

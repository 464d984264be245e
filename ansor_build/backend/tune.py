"""Measuring with MetaSchedule (Ansor's ideas: rule-generated search space, evolutionary search, XGBoost cost
model, gradient task scheduler) on the tasks a plan selects, writing every measured batch to the record store."""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .. import interrupt
from ..errors import AnsorError

from ..tuning.options import FORBID_ENV, TuningOptions
from ..tuning.plan import Plan
from . import import_tvm, winograd_schedule
from .measure import make_measurer
from .scheduler import Clock, Scheduler, Task, guarded_cost_model, measure_defaults
from .records import import_intrinsics, intrinsics_family, record_from_measurement, workload_json
from .rpc import error_line

log = logging.getLogger(__name__)

MAX_SHARE = 4  # a task may take up to this many times its trial budget from the run's shared budget


@dataclass
class TaskProgress:
    key: str
    name: str
    weight: int
    budget: int  # trials this build may measure for the task
    trials: int = 0  # stored in this run
    best_us: float | None = None
    default_us: float | None = None
    mod: object = None  # the task's IRModule and Target (TVM objects; set when tuning starts)
    target: object = None
    generated: int = 0  # candidates the search proposed in this run (measured or not)
    exhausted: bool = False  # the search proposed fewer candidates than asked: its space has no more


@dataclass
class TuneResult:
    """What one tuning run measured."""

    tasks: list[TaskProgress]
    trials: int = 0  # trials stored (a trial: a candidate that reached a device, whether it ran or failed)
    measured: int = 0  # candidates measured (equal to trials unless the store refused some)
    batches: int = 0  # measured batches
    seconds: float = 0.0
    stopped: str = ""  # why tuning ended early: "", "time budget", "trial budget", "runner fault"
    error: str = ""  # a fault that fails the build (e.g. the RPC tracker went away); what was measured is stored
    extra: dict = field(default_factory=dict)

    @property
    def trials_per_minute(self) -> float:
        return self.trials / self.seconds * 60 if self.seconds else 0.0


def check_allowed(plan: Plan) -> None:
    if plan.to_tune and TuningOptions.forbidden():
        names = ", ".join(f"{t.name} ({t.key}, {t.status})" for t in plan.to_tune[:5])
        more = f" and {len(plan.to_tune) - 5} more" if len(plan.to_tune) > 5 else ""
        raise AnsorError(f"{FORBID_ENV} is set but this build would tune {len(plan.to_tune)} task(s): {names}{more}")


def _batch_writer(store, states, workloads, result, progress, measurer, clock):
    """Store one measured batch (called by the scheduler right after its measurement), report progress, and say
    whether tuning must stop ("" to go on)."""
    from tvm.s_tir import meta_schedule as ms

    def on_batch(index, measure_candidates, builder_results, runner_results, exhausted) -> str:
        if TuningOptions.forbidden():  # belt and braces: check_allowed() runs before any measurement
            raise AnsorError(f"{FORBID_ENV} is set but a trial was measured")
        state = states[index]
        state.generated += len(measure_candidates)
        state.exhausted = state.exhausted or exhausted
        records, errors, run_errors = [], [], []
        for candidate, built, ran in zip(measure_candidates, builder_results, runner_results):
            if built.error_msg is None and measurer.unmeasured(ran.error_msg):
                run_errors.append(ran.error_msg)
                continue  # never reached a device: not a trial
            ok = built.error_msg is None and ran.error_msg is None and ran.run_secs
            run_secs = [float(s) for s in ran.run_secs] if ok else [1e10]
            if not ok:
                errors.append(built.error_msg or ran.error_msg or "no run time")
                if built.error_msg is None:
                    run_errors.append(ran.error_msg or "no run time")
            records.append(record_from_measurement(candidate.sch.trace, ms.database.Workload(state.mod), run_secs,
                                                   state.target, candidate.args_info))
        result.measured += len(records)
        before = store.entry(state.key).trials
        entry = store.add(state.key, state.name, workloads[index], records, trials=len(records),
                          default_us=state.default_us, failed=len(errors),
                          error=error_line(errors[-1]) if errors else None)
        stored = entry.trials - before
        state.trials += stored
        result.trials += stored
        result.batches += 1
        state.best_us = entry.best_us
        progress.update(result, clock.elapsed())
        fault = measurer.fault(run_errors, result.trials)
        if fault:
            result.error = fault
            return "runner fault"
        return clock.stop_reason()

    return on_batch


def tune_tasks(plan: Plan, ms_tasks: list, store, tvm_target, options: TuningOptions, log_dir: Path,
               progress, threads: int, runner=None) -> TuneResult:
    """Tune the plan's selected tasks; every measured batch is in the store when this returns or raises.

    `runner` (a RunnerSpec; None: this machine) says where candidates are measured. A fault that must stop tuning
    (the RPC tracker went away) raises AnsorError after the measured batches are stored.
    """
    check_allowed(plan)
    selected = [(task_plan, ms_task) for task_plan, ms_task in zip(plan.tasks, ms_tasks) if task_plan.tune]
    states = []
    for task_plan, _ in selected:
        remaining = options.trials_per_task if options.mode == "full" else \
            max(options.trials_per_task - task_plan.trials, 0)
        states.append(TaskProgress(task_plan.key, task_plan.name, task_plan.weight, remaining,
                                   best_us=task_plan.best_us))
    result = TuneResult(states)
    if not selected:
        return result
    started = time.perf_counter()
    # The budget is shared, as in Ansor: the run measures the tasks' budgets in all, and the scheduler (after one
    # batch for every task, most promising first) spends them where the weighted latency falls fastest. A task
    # whose search space is tiny (a transpose, a pool) ends after a few trials; a big convolution may take up to
    # MAX_SHARE times its budget. A run that ends this way records the budget per task it had
    # (`TuningStore.mark_budget`).
    total = sum(state.budget for state in states)
    full_budget = options.trials is None or options.trials >= total
    if not full_budget:
        total = options.trials
    clock = Clock(started, options.time_budget, max(total, 1))
    progress.start(result, total, options.time_budget, clock.elapsed)
    per_task = MAX_SHARE * max(state.budget for state in states)  # candidates one task may take from the run
    try:
        _tune_selected(selected, states, store, tvm_target, options, log_dir, progress, threads, runner, clock,
                       result, per_task)
    finally:
        result.seconds = clock.elapsed()
        progress.finish(result)
    if result.error:
        raise AnsorError(result.error)
    ended = not result.stopped  # ran to its end: the global budget is spent or every task ended on its own
    for state in states:
        # A short batch, or (every task having ended on its own) fewer candidates than its cap: nothing left to try.
        if state.exhausted or (ended and result.trials < total and state.generated < per_task):
            store.mark_exhausted(state.key)
        if ended and full_budget:
            store.mark_budget(state.key, options.trials_per_task)
    return result


def _tune_selected(selected, states, store, tvm_target, options, log_dir, progress, threads, runner, clock,
                   result, per_task: int) -> None:
    """Set MetaSchedule up for the selected tasks, time their default schedules, and run the scheduler."""
    progress.phase("loading MetaSchedule")
    import_tvm(threads)
    family = intrinsics_family(tvm_target)
    import_intrinsics(family)

    log_dir.mkdir(parents=True, exist_ok=True)
    # MetaSchedule's console handler takes this logger's level when it is set: keep the console to warnings;
    # everything goes to the per-task files in log_dir/logs.
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)
    measurer = make_measurer(runner, family, threads)  # RPC: fails here, within seconds, if no device can measure
    try:
        contexts, loggers = _tune_contexts([ms_task for _, ms_task in selected], log_dir, threads,
                                           options.population)
        workloads = [workload_json(ms_task.dispatched[0]) for _, ms_task in selected]
        for state, ctx in zip(states, contexts):
            state.mod, state.target = ctx.mod, ctx.target
        tasks = [Task(i, ctx, float(ms_task.weight), float(ms_task.weight) * 1e-6)
                 for i, (ctx, (_, ms_task)) in enumerate(zip(contexts, selected))]
        database = _warm_start_database(store, selected, tvm_target)
        # No batch larger than the smallest budget: the first round must reach every task before the budget runs out.
        per_iter = max(min(options.trials_per_iter, *(state.budget for state in states)), 1)
        builder, ms_runner = measurer.builder, measurer.runner
        with interrupt.graceful():  # a first Ctrl-C ends tuning after the measured batch is stored
            fault = measurer.check_defaults(*measure_defaults(tasks, states, builder, ms_runner, clock,
                                                              progress.phase),
                                            str(tvm_target.attrs.get("mtriple", "")))
            if fault:
                raise AnsorError(fault)
            scheduler = None
            cost_model = guarded_cost_model(lambda: scheduler, num_tuning_cores=threads)
            cost_model_path = _cost_model_path(store)
            _load_cost_model(cost_model, cost_model_path)
            on_batch = _batch_writer(store, states, workloads, result, progress, measurer, clock)
            scheduler = Scheduler(tasks, builder, ms_runner, database, cost_model, clock, per_task, per_iter,
                                  on_batch, progress.phase, loggers)
            result.stopped = clock.stop_reason() or scheduler.run()
            _save_cost_model(cost_model, cost_model_path)
    finally:
        measurer.close()


def _tune_contexts(ms_tasks, log_dir: Path, threads: int, population: int) -> tuple[list, list]:
    """One TuneContext per task: its space and search strategy (`_space_and_strategy`), per-task log file, fixed
    seeds; and the per-task loggers."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.logging import get_loggers_from_work_dir
    from tvm.s_tir.meta_schedule.utils import fork_seed

    # MetaSchedule's logging setup lists the handlers of its logger by name and fails on an unnamed one (another
    # library's, or a test harness's, in a process that tunes more than once): those are taken off it first.
    ms_logger = logging.getLogger("tvm.s_tir.meta_schedule")
    for handler in [h for h in ms_logger.handlers if h.get_name() is None]:
        ms_logger.removeHandler(handler)
    loggers = get_loggers_from_work_dir(str(log_dir), [task.task_name for task in ms_tasks])

    contexts = []
    for task, logger, seed in zip(ms_tasks, loggers, fork_seed(0, n=len(ms_tasks))):
        space, strategy = _space_and_strategy(task, population)
        contexts.append(ms.TuneContext(mod=task.dispatched[0], target=task.target, space_generator=space,
                                       search_strategy=strategy, task_name=task.task_name, logger=logger,
                                       rand_state=seed, num_threads=threads))
    return contexts, loggers


def _space_and_strategy(task, population: int):
    """MetaSchedule's rule-generated space (post-order apply of the target's rules) and evolutionary search; for a
    Winograd conv, the kernel's own small space, every point measured (`winograd_schedule`)."""
    from tvm.s_tir import meta_schedule as ms

    if winograd_schedule.is_winograd(task.dispatched[0]["main"]):
        space = ms.space_generator.ScheduleFn(winograd_schedule.space, sch_rules=[],
                                              postprocs=[ms.postproc.DisallowDynamicLoop()], mutator_probs={})
        return space, winograd_schedule.search_strategy()
    strategy = ms.search_strategy.EvolutionarySearch(population_size=population,
                                                     init_min_unmeasured=min(50, population))
    return "post-order-apply", strategy


def _cost_model_path(store) -> Path:
    """The XGBoost cost model of a target lives in the local cache (binary, machine-specific: not in the store)."""
    from ..cache import cache_dir

    return cache_dir() / "cost-models" / f"{store.directory.name}.tar"


def _load_cost_model(cost_model, path: Path) -> None:
    """Warm start: the model and its training data from earlier tuning of the same target (any model)."""
    if not path.is_file():
        return
    try:
        with warnings.catch_warnings():  # XGBoost warns about the file format TVM names its model file with
            warnings.simplefilter("ignore")
            cost_model.load(str(path))
        log.debug("cost model warm-started from %s (%d samples)", path, cost_model.data_size)
    except Exception as err:  # noqa: BLE001 - a stale or foreign file only costs the warm start
        log.warning("ignoring cost model %s: %s", path, err)


def _save_cost_model(cost_model, path: Path) -> None:
    if cost_model.booster is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tar")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cost_model.save(str(tmp))
        os.replace(tmp, path)
    except OSError as err:
        log.warning("could not save the cost model to %s: %s", path, err)


def _warm_start_database(store, selected, tvm_target):
    """Existing records of the tasks to tune seed the evolutionary search's first population."""
    from .records import memory_database

    extra = {}
    for task_plan, _ in selected:
        entry = store.entry(task_plan.key)
        if entry.header and entry.records:
            extra[task_plan.key] = (entry.header["workload"], entry.records)
    return memory_database({}, tvm_target, extra)

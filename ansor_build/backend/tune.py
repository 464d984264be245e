"""Measuring with MetaSchedule (Ansor's ideas: rule-generated search space, evolutionary search, XGBoost cost
model, gradient task scheduler) on the tasks a plan selects, writing every measured batch to the record store."""

from __future__ import annotations

import logging
import os
import shutil
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
    trials: int = 0
    best_us: float | None = None
    default_us: float | None = None
    generated: int = 0  # candidates the search proposed in this run (measured or not)
    exhausted: bool = False  # the search proposed fewer candidates than asked: its space has no more


@dataclass
class TuneResult:
    """What one tuning run measured."""

    tasks: list[TaskProgress]
    trials: int = 0
    seconds: float = 0.0
    stopped: str = ""  # why tuning ended early: "", "time budget", "trial budget", "runner fault"
    error: str = ""  # a fault that fails the build (e.g. the RPC tracker went away); what was measured is stored
    extra: dict = field(default_factory=dict)

    @property
    def trials_per_minute(self) -> float:
        return self.trials / self.seconds * 60 if self.seconds else 0.0


class StopTuning(Exception):
    """Raised by the measure callback to end tuning early (the reason is the message)."""


def check_allowed(plan: Plan) -> None:
    if plan.to_tune and TuningOptions.forbidden():
        names = ", ".join(f"{t.name} ({t.key}, {t.status})" for t in plan.to_tune[:5])
        more = f" and {len(plan.to_tune) - 5} more" if len(plan.to_tune) > 5 else ""
        raise AnsorError(f"{FORBID_ENV} is set but this build would tune {len(plan.to_tune)} task(s): {names}{more}")


def _make_callback(store, states, ms_tasks_by_id, options, started, result, progress, measurer, per_iter: int,
                   per_task: int):
    from tvm.s_tir import meta_schedule as ms
    from tvm.ir.utils import derived_object

    @derived_object
    class PersistAndBudget(ms.measure_callback.PyMeasureCallback):
        """After each measured batch: write it to the store, report progress, enforce the budgets."""

        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
            if TuningOptions.forbidden():  # belt and braces: check_allowed() runs before any measurement
                raise AnsorError(f"{FORBID_ENV} is set but a trial was measured")
            state = states[task_id]
            asked = min(per_iter, per_task - state.generated)  # what the search strategy was asked for
            state.generated += len(measure_candidates)
            state.exhausted = state.exhausted or len(measure_candidates) < asked
            ctx = task_scheduler.tasks_[task_id].ctx
            workload = ms.database.Workload(ctx.mod)
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
                records.append(record_from_measurement(candidate.sch.trace, workload, run_secs, ctx.target,
                                                       candidate.args_info))
            entry = store.add(state.key, state.name, ms_tasks_by_id[task_id], records, trials=len(records),
                              default_us=state.default_us, failed=len(errors),
                              error=error_line(errors[-1]) if errors else None)

            state.trials += len(records)
            result.trials += len(records)
            state.best_us = entry.best_us
            elapsed = time.perf_counter() - started
            progress.update(result, elapsed)
            # Terminating tasks from a callback trips the scheduler's own checks (it terminates tasks whose search
            # is exhausted, and its round-robin start ignores termination); stopping by exception is clean: every
            # measured batch is already in the store.
            fault = measurer.fault(run_errors, result.trials)
            if fault:
                result.stopped, result.error = "runner fault", fault
            elif interrupt.requested():
                result.stopped = "interrupted"
            elif options.time_budget is not None and elapsed >= options.time_budget:
                result.stopped = "time budget"
            if result.stopped:
                raise StopTuning(result.stopped)

    return PersistAndBudget()


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
    import_tvm(threads)
    family = intrinsics_family(tvm_target)
    import_intrinsics(family)
    from tvm.s_tir import meta_schedule as ms

    log_dir.mkdir(parents=True, exist_ok=True)
    # MetaSchedule's console handler takes this logger's level when it is set: keep the console to warnings;
    # everything goes to the per-task files in log_dir/logs.
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)
    measurer = make_measurer(runner, family, threads)  # RPC: fails here, within seconds, if no device can measure
    contexts = _tune_contexts([ms_task for _, ms_task in selected], log_dir, threads, options.population)
    weights = [float(ms_task.weight) for _, ms_task in selected]
    workloads = [workload_json(ms_task.dispatched[0]) for _, ms_task in selected]
    database = _warm_start_database(store, selected, tvm_target)
    # The budget is shared, as in Ansor: the run measures the tasks' budgets in all, and the gradient task scheduler
    # (after one round for every task) spends them where the weighted latency falls fastest. A task whose search
    # space is tiny (a transpose, a pool) ends after a few trials; a big convolution may take up to MAX_SHARE times
    # its budget. A run that ends this way records the budget per task it had (`TuningStore.mark_budget`).
    total = sum(state.budget for state in states)
    full_budget = options.trials is None or options.trials >= total
    if not full_budget:
        total = options.trials
    per_task = MAX_SHARE * max(state.budget for state in states)
    # No batch larger than the smallest budget: the first round must reach every task before the budget runs out.
    per_iter = max(min(options.trials_per_iter, *(state.budget for state in states)), 1)
    started = time.perf_counter()
    callback = _make_callback(store, states, dict(enumerate(workloads)), options, started, result, progress,
                              measurer, per_iter, per_task)
    builder, runner = measurer.builder, measurer.runner
    fault = measurer.check_defaults(*_measure_defaults(states, contexts, builder, runner),
                                    str(tvm_target.attrs.get("mtriple", "")))
    if fault:
        measurer.close()
        raise AnsorError(fault)
    cost_model = ms.cost_model.XGBModel(num_tuning_cores=threads)
    cost_model_path = _cost_model_path(store)
    _load_cost_model(cost_model, cost_model_path)
    progress.start(result, total, options.time_budget)
    with interrupt.graceful():  # a first Ctrl-C ends tuning after the measured batch is stored
        try:
            ms.tune.tune_tasks(
                tasks=contexts, task_weights=weights, work_dir=str(log_dir), max_trials_global=max(total, 1),
                max_trials_per_task=max(per_task, 1),
                num_trials_per_iter=per_iter, builder=builder, runner=runner, database=database,
                cost_model=cost_model, task_scheduler="gradient",
                measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"), callback])
        except Exception:  # noqa: BLE001 - tvm_ffi re-raises the callback's StopTuning as a RuntimeError
            if not result.stopped:
                raise
        finally:
            result.seconds = time.perf_counter() - started
            progress.finish(result)
            measurer.close()
    _save_cost_model(cost_model, cost_model_path)
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


def _tune_contexts(ms_tasks, log_dir: Path, threads: int, population: int) -> list:
    """One TuneContext per task: its space and search strategy (`_space_and_strategy`), per-task log file, fixed
    seeds."""
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
    return contexts


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


def _measure_defaults(states, contexts, builder, runner) -> tuple[list[str], int]:
    """Latency of each task's unscheduled code (the "speedup vs default" column); failures are only missing data.

    Returns the run errors and how many built tasks were run.
    """
    from tvm.s_tir import meta_schedule as ms

    inputs = [ms.builder.BuilderInput(ctx.mod, ctx.target) for ctx in contexts]
    built = builder.build(inputs)
    runnable = [(i, b) for i, b in enumerate(built) if b.error_msg is None]
    runner_inputs = [ms.runner.RunnerInput(b.artifact_path, ctx_device(contexts[i].target),
                                           ms.arg_info.ArgInfo.from_entry_func(contexts[i].mod, remove_preproc=True))
                     for i, b in runnable]
    errors = []
    for (i, b), future in zip(runnable, runner.run(runner_inputs)):
        ran = future.result()
        if ran.error_msg is None and ran.run_secs:
            states[i].default_us = sum(float(s) for s in ran.run_secs) / len(ran.run_secs) * 1e6
        else:
            errors.append(ran.error_msg or "no run time")
    for _, b in runnable:
        if b.artifact_path:
            shutil.rmtree(os.path.dirname(b.artifact_path), ignore_errors=True)
    return errors, len(runnable)


def ctx_device(target) -> str:
    return "cuda" if target.kind.name == "cuda" else "cpu"

"""The tuning scheduler's decisions without TVM: budgets and what fits in them, the first round's order, Ansor's
gradient, and the guard that stops a search."""

from __future__ import annotations

import time

import pytest

from ansor_build import interrupt
from ansor_build.backend.scheduler import Clock, Scheduler, SearchStopped, Task, gradient


def _clock(seconds=None, trials=100, elapsed=0.0, pace=None):
    return Clock(time.perf_counter() - elapsed, seconds, trials, pace=pace)


def test_fits_cuts_the_last_batch_to_the_time_and_trials_left():
    assert _clock().fits(32) == 32
    assert _clock(trials=40, pace=0.5).fits(32) == 32
    clock = _clock(trials=40)
    clock.measured = 30
    assert clock.fits(32) == 10  # trial budget
    assert _clock(seconds=60, elapsed=50, pace=1.0).fits(32) == 9  # 10 s left, 1.1 s per candidate with margin
    assert _clock(seconds=60, elapsed=59.5, pace=1.0).fits(32) == 0
    assert _clock(seconds=60, elapsed=61).fits(32) == 0  # no pace known yet: only time left counts
    assert _clock(seconds=60, elapsed=10).fits(32) == 32


def test_pace_is_learnt_from_the_batches():
    clock = _clock()
    clock.learn(8.0, 8)
    assert clock.pace == 1.0
    clock.learn(16.0, 8)
    assert clock.pace == 1.5
    clock.learn(5.0, 0)  # nothing measured: nothing learnt
    assert clock.pace == 1.5


def test_stop_reasons():
    assert _clock(seconds=60, elapsed=10).stop_reason() == ""
    assert _clock(seconds=60, elapsed=60).stop_reason() == "time budget"
    assert _clock().stop_reason() == ""


def _tasks(gains, weights=None):
    weights = weights or [1.0] * len(gains)
    return [Task(i, ctx=None, weight=w, gain=g) for i, (g, w) in enumerate(zip(gains, weights))]


def _scheduler(tasks, clock=None, per_iter=32):
    return Scheduler(tasks, None, None, None, None, clock or _clock(), per_task=64, per_iter=per_iter,
                     on_batch=None, on_phase=lambda text: None)


def test_first_round_goes_by_expected_gain_then_by_gradient():
    tasks = _tasks([5.0, 50.0, 0.5, 50.0])
    scheduler = _scheduler(tasks)
    order = []
    for _ in range(4):
        task = scheduler._next()
        task.started = True
        task.history.append(1e-3)
        order.append(task.index)
    assert order == [1, 3, 0, 2]  # most gain first; equal gains in task order
    # After the first round: the task whose weighted latency falls fastest (here: the slowest, most weighted one).
    tasks[2].history, tasks[2].weight = [4e-3], 3.0
    assert scheduler._next() is tasks[2]
    tasks[2].ended = True
    assert scheduler._next() is not tasks[2]
    for task in tasks:
        task.ended = True
    assert scheduler._next() is None


def test_gradient_is_ansors():
    task = Task(0, ctx=None, weight=2.0, gain=0.0)
    assert gradient(task) == -1e9  # nothing ran yet
    task.history = [1e10]
    assert gradient(task) == -1e9  # every candidate failed
    task.history = [4.0, 3.0, 2.0, 1.0]  # best latency after each batch
    backward = (4.0 - 1.0) / 3
    assert gradient(task) == pytest.approx((0.2 * backward + 0.8 * 1.0 / 4) * 2.0)


def test_guard_stops_a_search_when_time_runs_out_or_on_interrupt(monkeypatch):
    scheduler = _scheduler(_tasks([1.0]), clock=_clock(seconds=60, elapsed=55, pace=1.0), per_iter=32)
    scheduler.guard()  # 5 s left
    scheduler._reserve = 8.0  # a quarter batch of 32 at 1 s each does not fit any more
    with pytest.raises(SearchStopped):
        scheduler.guard()
    assert scheduler.stopped == "time budget"
    scheduler = _scheduler(_tasks([1.0]))
    monkeypatch.setattr(interrupt, "requested", lambda: True)
    with pytest.raises(SearchStopped):
        scheduler.guard()
    assert scheduler.stopped == "interrupted"

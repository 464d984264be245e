"""Tuning progress: a live line on a terminal, plain log lines otherwise, and the summary table at the end."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger("ansor_build.tuning")


def format_us(us: float | None) -> str:
    """`12.3 us` or `1.234 ms`; `-` for None."""
    if us is None:
        return "-"
    return f"{us / 1000:.3f} ms" if us >= 1000 else f"{us:.1f} us"


def estimated_us(tasks) -> float | None:
    """The model's latency as its tuned tasks add up: weight x the faster of the best record and the unscheduled
    code (what a build applies); None until every task has one of the two."""
    total = 0.0
    for task in tasks:
        measured = [us for us in (task.best_us, task.default_us) if us is not None]
        if not measured:
            return None
        total += min(measured) * task.weight
    return total


class Progress:
    """Reports tuning of one model; `interactive` draws one updating line (stderr is a terminal).

    The line is also shown every `min_interval` seconds while nothing is measured (a search, a build): a heartbeat
    thread redraws it on a terminal and logs it otherwise, with what runs now (`phase`). With `history`, every
    measured batch also appends one JSON line there: `trials` and `seconds` so far, the `estimated_us` of the tuned
    tasks (see `estimated_us`) and the `best_us` of each task key: how the search converges (benchmarks/tuning.py
    plots it).
    """

    def __init__(self, label: str, stream=None, interactive: bool | None = None, min_interval: float = 10.0,
                 history: Path | None = None):
        self.label = label
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.min_interval = min_interval
        self.history = history
        self.total = 0
        self.budget = None
        self._last = 0.0
        self._phase = ""
        self._result = None
        self._elapsed = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = None

    def start(self, result, total_trials: int, time_budget: float | None, elapsed=None) -> None:
        """Begin a run: its first line now; then a line at least every `min_interval` s until `finish`.
        `elapsed()` gives the run's seconds so far (for the heartbeat)."""
        self.total, self.budget = total_trials, time_budget
        self._result, self._elapsed = result, elapsed
        self._record(result, 0.0)
        budget = f", time budget {time_budget:g} s" if time_budget else ""
        log.info("tuning %s: %d tasks, up to %d trials%s", self.label, len(result.tasks), total_trials, budget)
        self._last = time.monotonic()
        if elapsed is not None and self.min_interval > 0:
            self._done.clear()
            self._thread = threading.Thread(target=self._beat, name="ansor-progress", daemon=True)
            self._thread.start()

    def phase(self, text: str) -> None:
        """What the run does now (`searching fused_conv2d_add (task 3/42)`), shown at the end of the line."""
        self._phase = text

    def line(self, result, elapsed: float) -> str:
        done = sum(1 for t in result.tasks if t.trials >= t.budget)
        best = sum((t.best_us or 0) * t.weight for t in result.tasks if t.best_us)
        budget = f"/{self.budget:g}" if self.budget else ""
        phase = f"; {self._phase}" if self._phase else ""
        return (f"tuning {self.label}: tasks {done}/{len(result.tasks)}, trials {result.trials}/{self.total}, "
                f"weighted best {format_us(best)}, {elapsed:.0f}{budget} s{phase}")

    def _record(self, result, elapsed: float) -> None:
        if self.history is None:
            return
        row = {"trials": result.trials, "seconds": round(elapsed, 3), "estimated_us": estimated_us(result.tasks),
               "best_us": {t.key: t.best_us for t in result.tasks}}
        self.history.parent.mkdir(parents=True, exist_ok=True)
        with open(self.history, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(row, sort_keys=True) + "\n")

    def _show(self, result, elapsed: float, force: bool) -> None:
        with self._lock:
            text = self.line(result, elapsed)
            if self.interactive:
                self.stream.write("\r\033[K" + text)
                self.stream.flush()
            elif force or time.monotonic() - self._last >= self.min_interval:
                log.info("%s", text)
            else:
                return
            self._last = time.monotonic()

    def _beat(self) -> None:
        tick = min(self.min_interval, 1.0)
        while not self._done.wait(tick):
            if time.monotonic() - self._last >= self.min_interval:
                self._show(self._result, self._elapsed(), force=True)

    def update(self, result, elapsed: float) -> None:
        """One measured batch is stored: a history line, and the progress line (at most every `min_interval` s in
        logs)."""
        self._record(result, elapsed)
        self._show(result, elapsed, force=False)

    def finish(self, result) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.interactive:
            with self._lock:
                self.stream.write("\r\033[K")
                self.stream.flush()
        stopped = f" (stopped: {result.stopped})" if result.stopped else ""
        log.info("tuned %s: %d trials stored in %.1f s (%.1f trials/min); %d candidates measured in %d batches, "
                 "%d stored%s", self.label, result.trials, result.seconds, result.trials_per_minute, result.measured,
                 result.batches, result.trials, stopped)


def summary_table(rows: list[dict]) -> str:
    """Rows: name, key, weight, status, trials, best_us, default_us."""
    lines = [f"{'task':<34} {'key':<16} {'weight':>6} {'status':<11} {'trials':>6} {'best':>11} {'default':>11}"
             f" {'speedup':>7}"]
    for row in rows:
        speedup = (f"{row['default_us'] / row['best_us']:.1f}x" if row.get("default_us") and row.get("best_us")
                   else "-")
        lines.append(f"{row['name'][:34]:<34} {row['key']:<16} {row['weight']:>6} {row['status']:<11} "
                     f"{row['trials']:>6} {format_us(row.get('best_us')):>11} {format_us(row.get('default_us')):>11} "
                     f"{speedup:>7}")
    return "\n".join(lines)

"""The builder and runner of a tuning run: this machine (`builder.pooled_builder`, MetaSchedule's LocalRunner), or
devices behind a TVM RPC tracker (`rpc`), chosen by the target's `tuning.runner`."""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class Measurer:
    """What a tuning run measures with; `monitor` (RPC only) tells faults that must stop tuning."""

    builder: object
    runner: object
    monitor: object | None = None
    label: str = "this machine"

    def unmeasured(self, error_msg: str | None) -> bool:
        """The candidate never reached a device: neither stored nor counted as a trial."""
        return self.monitor is not None and self.monitor.unmeasured(error_msg)

    def fault(self, run_errors: list[str], measured: int) -> str | None:
        """After a batch: a one-line reason to stop tuning, or None."""
        return self.monitor.fault(run_errors, measured) if self.monitor is not None else None

    def check_defaults(self, run_errors: list[str], ran: int, triple: str) -> str | None:
        """After timing the tasks' unscheduled code: a one-line reason not to start the search, or None."""
        return self.monitor.check_defaults(run_errors, ran, triple) if self.monitor is not None else None

    def close(self) -> None:
        """End the builder's worker processes, and the runner's (the RPC runner keeps a pool for the whole run)."""
        self.builder.close()  # a `builder.pooled_builder`
        pool = getattr(self.runner, "pool", None) if self.monitor is not None else None
        if pool is not None:
            pool.shutdown(wait=False)


def make_measurer(spec, family: str, threads: int) -> Measurer:
    """The builder/runner pair for `spec` (a RunnerSpec; None: this machine).

    RPC: checks first, within seconds, that the tracker answers and has a device of the key (one-line errors).
    """
    from tvm.s_tir import meta_schedule as ms

    from .builder import pooled_builder
    from .codegen import export_candidate
    from .records import import_intrinsics

    initializer = functools.partial(import_intrinsics, family)
    # CPU candidates are linked as packages are, with the package's runtime (thread pool, workspace arenas): tuning
    # times each kernel with the launch and allocation costs it will have in the package.
    cpu = family != "cuda"
    cxx, flags = (spec.cxx, tuple(spec.flags)) if spec is not None else ("g++", ())
    f_export = functools.partial(export_candidate, cxx, flags, cpu)
    if spec is None or not spec.is_rpc:  # GPU candidates measured here: TVM's own export, as before
        return Measurer(pooled_builder(threads, initializer, f_export if cpu else None), ms.runner.LocalRunner())
    from . import rpc, tracker

    workers = tracker.check_devices(spec)
    # Candidates are built here, on this machine's cores, whatever the device's core count.
    build_workers = max(os.cpu_count() or 1, 1)
    builder, runner = rpc.make_builder_runner(spec, workers, build_workers, initializer, f_export)
    label = f"{workers} '{spec.key}' device(s) of tracker {spec.tracker}"
    log.info("measuring on %s", label)
    return Measurer(builder, runner, rpc.Monitor(spec), label)

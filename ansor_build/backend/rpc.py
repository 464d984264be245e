"""Measuring on devices through a TVM RPC tracker: candidates are linked on this machine with the target's toolchain
into the shared library the device loads, and timed on the servers the tracker hands out.

Faults: a device that dies or hangs costs the candidates it was timing (failed results, with the error); a tracker
that goes away, or a key whose last device left, stops tuning (`Monitor.fault`). Runner jobs have a deadline, so
nothing waits forever on a silent device.
"""

from __future__ import annotations

import logging

from . import tracker

log = logging.getLogger(__name__)

# Mark the results of candidates that never reached a device (not measurements: neither stored nor counted).
TRACKER_LOST = "ansor-build: tracker lost"
NO_DEVICE = "ansor-build: no device"


def create_session(config):
    """`f_create_session` of the runner workers: a session on a device of `config.tracker_key`.

    Asks the tracker first, with bounded waits, whether it answers (TVM's client would retry a refused tracker for a
    minute) and still has a device of the key (a request for a key without devices waits forever); those failures
    are marked TRACKER_LOST / NO_DEVICE. A device that vanishes between hand-out and connect is asked for again.
    """
    from tvm import rpc

    host, port, key = config.tracker_host, config.tracker_port, config.tracker_key
    last = None
    for _ in range(3):
        try:
            found = tracker.device_keys(host, port).get(key)
        except tracker.TrackerUnreachable as err:
            raise RuntimeError(f"{TRACKER_LOST}: {err}") from None
        if found is None or found.total == 0:
            raise RuntimeError(f"{NO_DEVICE}: tracker {host}:{port} has no device with key '{key}'")
        session = rpc.connect_tracker(host, port)
        try:
            return session.request(key, priority=config.session_priority,
                                   session_timeout=config.session_timeout_sec, max_retry=1)
        except RuntimeError as err:  # the tracker dropped the request, or the device it handed out is gone
            last = err
        finally:
            session.close()
    raise RuntimeError(f"no session on a '{key}' device after 3 tries: {last}")


def job_timeout(spec) -> float:
    """Seconds one candidate may take end to end: reaching the tracker, waiting for a device (it may be finishing
    a candidate), and the session itself (which the server ends after `spec.timeout`)."""
    return 2 * spec.timeout + tracker.CONNECT_TIMEOUT + 5


def make_builder_runner(spec, workers: int, build_workers: int, initializer, f_export):
    """The builder (candidates linked by `f_export`, with the target's toolchain) and the runner (RPC, `workers`
    devices at once, each job bounded by `job_timeout`)."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.support.popen_pool import PopenPoolExecutor

    from .builder import pooled_builder

    builder = pooled_builder(build_workers, initializer, f_export)
    config = ms.runner.RPCConfig(tracker_host=spec.host, tracker_port=spec.port, tracker_key=spec.key,
                                 session_timeout_sec=int(max(spec.timeout, 1)))
    runner = ms.runner.RPCRunner(rpc_config=config, f_create_session=create_session, max_workers=workers)
    # RPCRunner's pool has no deadline: a job on a device that hangs (or a tracker that stops answering) would
    # wait forever. A pool with one turns that into a failed result ("Timeout").
    unbounded, runner.pool = runner.pool, PopenPoolExecutor(max_workers=workers, timeout=job_timeout(spec))
    unbounded.shutdown(wait=False)
    return builder, runner


def error_line(message: str | None) -> str:
    """The informative line of a builder/runner error: TVM puts a generic line first and the exception last, and
    an RPC error's own header line ends with ':' (the cause follows)."""
    lines = [line.strip() for line in str(message or "").splitlines() if line.strip()]
    for line in reversed(lines):
        if not line.endswith(":") and not line.startswith(("File ", "^", "~")):
            return line[:300]
    return lines[-1][:300] if lines else "no run time"


class Monitor:
    """Watches the results of an RPC tuning run for faults that must stop it."""

    def __init__(self, spec):
        self.spec = spec

    @staticmethod
    def unmeasured(error_msg: str | None) -> bool:
        """The candidate never reached a device (the tracker was gone, or had no device of the key): not a
        measurement, neither stored nor counted."""
        return bool(error_msg) and (TRACKER_LOST in error_msg or NO_DEVICE in error_msg)

    def fault(self, run_errors: list[str], measured: int) -> str | None:
        """After a batch with failed runs: why tuning must stop (tracker gone, no device of the key left), else
        None. `measured` is the trials the run has stored so far (named in the message)."""
        if not run_errors:
            return None
        failed = [e for e in run_errors if not self.unmeasured(e)]
        if failed:
            lines = list(dict.fromkeys(error_line(e) for e in failed))
            log.warning("%d candidate(s) failed on '%s' devices: %s", len(failed), self.spec.key,
                        " | ".join(lines[:3]) + (f" | and {len(lines) - 3} other errors" if len(lines) > 3 else ""))
        where = f"{self.spec.source}: tuning.runner"
        kept = f"the {measured} trials measured so far are kept; the next build continues from them"
        try:
            keys = tracker.device_keys(self.spec.host, self.spec.port)
        except tracker.TrackerUnreachable as err:
            return f"{where}.tracker: tracker {self.spec.tracker} went away during tuning ({err}); {kept}"
        if keys.get(self.spec.key) is None or keys[self.spec.key].total == 0:
            return (f"{where}.key: tracker {self.spec.tracker} has no device with key '{self.spec.key}' left "
                    f"during tuning; {kept}")
        return None

    def check_defaults(self, run_errors: list[str], ran: int, triple: str) -> str | None:
        """Before the search: when the unscheduled code of no task ran on a device, every candidate would fail
        the same way (a device of another architecture, a TVM runtime that cannot load the library): why."""
        if not ran or len(run_errors) < ran:
            return None
        fault = self.fault(run_errors, 0)
        if fault:
            return fault
        return (f"{self.spec.source}: tuning.runner.key: no '{self.spec.key}' device of tracker {self.spec.tracker} "
                f"could run the unscheduled code of any task ({error_line(run_errors[-1])}); check that they are "
                f"{triple or 'the target'} devices with the TVM runtime of this build host's version")

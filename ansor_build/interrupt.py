"""Graceful interruption of long work (tuning): the first Ctrl-C or SIGTERM finishes the measured batch, whose
records are then safe in the store; a second one stops at once."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading

log = logging.getLogger(__name__)

_requested = threading.Event()


def requested() -> bool:
    """True once an interruption was asked for inside `graceful()`."""
    return _requested.is_set()


@contextlib.contextmanager
def graceful():
    """Turn SIGINT/SIGTERM into a request that the work polls (`requested()`); raise KeyboardInterrupt after the
    block if one came. Only in the main thread (signal handlers can only be set there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        if _requested.is_set():
            raise KeyboardInterrupt(f"signal {signum}")
        _requested.set()
        log.warning("interrupted: finishing the batch being measured (its records are kept); "
                    "interrupt again to stop at once")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    _requested.clear()
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    if _requested.is_set():
        _requested.clear()
        raise KeyboardInterrupt("interrupted")


# The CLI's own handlers (outside `graceful()`) raise KeyboardInterrupt, but Python drops an exception raised while a
# signal handler runs inside a weakref callback or a destructor ("Exception ignored in ..."), as happens during an
# import. So the stop is also recorded, and the places that must not carry on after it (the swap of a new package
# into place, the CLI's exit code) check it.
_stop: int | None = None


def request_stop(signum: int) -> None:
    """Record that signal `signum` asked the process to stop, and raise KeyboardInterrupt."""
    global _stop
    _stop = signum
    raise KeyboardInterrupt(f"signal {signum}")


def check_stop() -> None:
    """Raise KeyboardInterrupt if a stop was requested (its first exception may have been dropped)."""
    if _stop is not None:
        raise KeyboardInterrupt(f"signal {_stop}")

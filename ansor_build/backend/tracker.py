"""What a TVM RPC tracker has (device keys, free/pending/total), asked with bounded waits: TVM's own client retries
a refused connection for a minute and waits forever on a silent peer."""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import asdict, dataclass

from ..errors import AnsorError, InputError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0  # seconds to reach the tracker and get its answer


class TrackerUnreachable(AnsorError):
    """The tracker refused, timed out or did not speak the tracker protocol."""


@dataclass(frozen=True)
class DeviceKey:
    """One device key of a tracker: servers registered (total), idle now (free), requests waiting (pending)."""

    key: str
    total: int
    free: int
    pending: int

    def as_dict(self) -> dict:
        return asdict(self)


def probe(host: str, port: int, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """None when something accepts TCP connections at host:port, else why not (one line)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.timeout:
        return f"no answer in {timeout:g} s"
    except OSError as err:
        return err.strerror or str(err)


def _bounded(fn, timeout: float, what: str):
    """Run `fn` in a daemon thread; raise TrackerUnreachable if it does not return within `timeout`."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = err

    thread = threading.Thread(target=run, daemon=True, name="ansor-tracker-query")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TrackerUnreachable(f"{what}: no answer in {timeout:g} s (is it a TVM RPC tracker?)")
    if "error" in box:
        raise TrackerUnreachable(f"{what}: {str(box['error']).strip().splitlines()[-1]}")
    return box["value"]


def summary(host: str, port: int, timeout: float = CONNECT_TIMEOUT) -> dict:
    """The tracker's raw summary (`TrackerSession.summary()`), or TrackerUnreachable within ~2x `timeout`."""
    where = f"tracker {host}:{port}"
    reason = probe(host, port, timeout)
    if reason:
        raise TrackerUnreachable(f"{where} is unreachable: {reason}")
    from . import import_tvm

    import_tvm()
    from tvm import rpc

    def ask():
        session = rpc.connect_tracker(host, port)
        try:
            return session.summary()
        finally:
            session.close()

    return _bounded(ask, timeout, where)


def device_keys(host: str, port: int, timeout: float = CONNECT_TIMEOUT) -> dict[str, DeviceKey]:
    """key -> DeviceKey, for every key with a server or a waiting request, sorted by key."""
    data = summary(host, port, timeout)
    totals: dict[str, int] = {}
    for server in data.get("server_info", []):
        kind, _, key = str(server.get("key", "")).partition(":")  # "server:rpi4"
        if kind == "server" and key:
            totals[key] = totals.get(key, 0) + 1
    queues = data.get("queue_info", {})
    keys = sorted(set(totals) | set(queues))
    return {key: DeviceKey(key, totals.get(key, 0), int(queues.get(key, {}).get("free", 0)),
                           int(queues.get(key, {}).get("pending", 0))) for key in keys}


def format_table(keys: dict[str, DeviceKey]) -> str:
    """The `ansor-build devices` table."""
    width = max([len("key"), *(len(k) for k in keys)])
    lines = [f"{'key':<{width}}  {'free':>4}  {'pending':>7}  {'total':>5}"]
    for item in keys.values():
        lines.append(f"{item.key:<{width}}  {item.free:>4}  {item.pending:>7}  {item.total:>5}")
    return "\n".join(lines)


def check_devices(spec) -> int:
    """Before tuning: fail with one line unless the tracker answers and has a device of `spec.key`.

    Returns how many devices to measure on at once: `parallel`, at most the devices the tracker has.
    """
    where = f"{spec.source}: tuning.runner"
    try:
        keys = device_keys(spec.host, spec.port)
    except TrackerUnreachable as err:
        raise InputError(f"{where}.tracker: {err}; start it (python3 -m tvm.exec.rpc_tracker --host 0.0.0.0 "
                         f"--port {spec.port}) or fix the address") from None
    found = keys.get(spec.key)
    if found is None or found.total == 0:
        have = ", ".join(f"{k.key} ({k.total})" for k in keys.values() if k.total) or "none"
        raise InputError(f"{where}.key: tracker {spec.tracker} has no free or busy device with key '{spec.key}' "
                         f"(keys it has: {have})")
    if found.total < spec.parallel:
        log.warning("%s.parallel: %d devices asked for, tracker %s has %d with key '%s': using %d", where,
                    spec.parallel, spec.tracker, found.total, spec.key, found.total)
    return min(spec.parallel, found.total)

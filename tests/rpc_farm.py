"""A real TVM RPC board farm on 127.0.0.1: `python -m tvm.exec.rpc_tracker` and N `python -m tvm.exec.rpc_server`
processes, each in its own process group so that it ends with every worker it started; and target files that
measure on it (rpc tier, benchmarks/rpc.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
KEY = "test"

# One runtime thread per server and per local measurement: two servers share this machine's two cores, so the
# latencies of RPC and local tuning are comparable.
BASE = """extends: x86_64-avx2
name: fast1
tvm: {{num-cores: 1}}
runtime: {{threads: 1}}
tuning:
  trials_per_task: {trials}
  trials_per_iter: 8
  population: 32
"""

RUNNER = """  runner: {{kind: rpc, tracker: "{tracker}", key: {key}, parallel: {parallel}, timeout: {timeout}}}
"""


def write_target(path, tracker: str | None = None, *, key: str = KEY, parallel: int = 2, timeout: float = 10,
                 trials: int = 8, extends: str | None = None):
    """A small-budget target file; with `tracker`, it measures on the tracker's devices of `key`."""
    text = BASE.format(trials=trials)
    if extends:
        text = text.replace("extends: x86_64-avx2", f"extends: {extends}")
    if tracker:
        text += RUNNER.format(tracker=tracker, key=key, parallel=parallel, timeout=timeout)
    path.write_text(text)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    key: str
    proc: subprocess.Popen
    log: Path

    def sessions(self) -> int:
        """Sessions this server has served or is serving (its log has a line per connection)."""
        return self.log.read_text(errors="replace").count("connected from")

    def finished(self) -> int:
        return self.log.read_text(errors="replace").count("finish serving")

    def measuring(self) -> bool:
        """In a session that has loaded its candidate and not finished: timing it now."""
        text = self.log.read_text(errors="replace")
        last = text[text.rfind("connected from"):] if "connected from" in text else ""
        return "load_module" in last and "finish serving" not in last


class Farm:
    """A tracker and its servers; `close()` kills every process group it started."""

    def __init__(self, root: Path, threads: int = 2):
        self.root = root
        self.threads = threads
        self.port = free_port()
        self.tracker_log = root / "tracker.log"
        self.tracker = self._start([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", HOST, "--port",
                                    str(self.port), "--port-end", str(self.port + 1)], self.tracker_log)
        self.servers: list[Server] = []
        self._wait(lambda: _reachable(self.port), "the tracker to listen")

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def _start(self, command: list[str], log: Path) -> subprocess.Popen:
        env = {**os.environ, "TVM_NUM_THREADS": str(self.threads)}
        with open(log, "ab") as out:
            return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def add_servers(self, key: str, count: int) -> list[Server]:
        """Start `count` servers registering `key` and wait until the tracker lists them."""
        started = []
        for _ in range(count):
            port = free_port()
            log = self.root / f"server-{key}-{len(self.servers)}.log"
            proc = self._start([sys.executable, "-m", "tvm.exec.rpc_server", "--tracker", self.address, "--key", key,
                                "--host", HOST, "--port", str(port), "--port-end", str(port + 1)], log)
            started.append(Server(key, proc, log))
            self.servers.append(started[-1])
        want = sum(1 for s in self.servers if s.key == key and s.proc.poll() is None)
        self._wait(lambda: self.total(key) == want, f"{want} '{key}' servers to register")
        return started

    def total(self, key: str) -> int:
        from ansor_build.backend import tracker

        try:
            found = tracker.device_keys(HOST, self.port, timeout=2).get(key)
        except tracker.TrackerUnreachable:
            return -1
        return found.total if found else 0

    def _wait(self, condition, what: str, timeout: float = 90) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if condition():
                return
            if self.tracker.poll() is not None:
                raise AssertionError(f"the tracker exited:\n{self.tracker_log.read_text()}")
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}")

    @staticmethod
    def kill(proc: subprocess.Popen, sig=signal.SIGKILL) -> None:
        """Signal the process group of `proc` (the process and the workers it forked or spawned)."""
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        if sig == signal.SIGKILL:
            proc.wait(timeout=30)

    def close(self) -> None:
        for proc in [s.proc for s in self.servers] + [self.tracker]:
            self.kill(proc)


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


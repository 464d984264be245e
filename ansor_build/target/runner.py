"""Where tuning measures candidates: `tuning.runner` of a target file (this machine, or devices behind a TVM RPC
tracker)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InputError
from .show import shown

KINDS = ("local", "rpc")
DEFAULT_TIMEOUT = 30.0  # seconds one device may take to upload, load and time one candidate


@dataclass(frozen=True)
class RunnerSpec:
    """How candidates are measured.

    kind: "local" (this machine, MetaSchedule's LocalRunner) or "rpc" (devices of `key` handed out by the TVM RPC
    tracker at host:port). timeout: seconds a device may take per candidate. parallel: devices measuring at once.
    cxx, flags: the target's toolchain, which links every candidate into the shared library the device loads.
    source: the target file (named in errors).
    """

    kind: str = "local"
    host: str = ""
    port: int = 0
    key: str = ""
    timeout: float = DEFAULT_TIMEOUT
    parallel: int = 1
    cxx: str = "g++"
    flags: tuple[str, ...] = ()
    source: str = ""

    @property
    def is_rpc(self) -> bool:
        return self.kind == "rpc"

    @property
    def tracker(self) -> str:
        """`HOST:PORT` of the tracker."""
        return f"{self.host}:{self.port}"


def parse_tracker(text: str, where: str) -> tuple[str, int]:
    """`HOST:PORT` -> (host, port); `where` prefixes the one-line error (e.g. `pi.yaml: tuning.runner.tracker`)."""
    host, sep, port = str(text).rpartition(":")
    # ASCII digits only: str.isdigit() also passes '²' (int() fails) and 5000 digits (int() refuses)
    if not sep or not host or not re.fullmatch(r"[0-9]{1,5}", port) or not 0 < int(port) < 65536:
        raise InputError(f"{where}: {shown(str(text), 80)} is not HOST:PORT (e.g. 10.0.0.5:9190; the port is 1-65535)")
    return host.strip("[]"), int(port)


def runner_spec(section: dict, source: str, cxx: str = "g++", flags=()) -> RunnerSpec:
    """The runner of a merged target spec's `tuning.runner` mapping (validated by the schema: types and kinds).

    Raises InputError when an rpc runner lacks its tracker or key, or the tracker is not HOST:PORT.
    """
    kind = section.get("kind", "local")
    common = dict(timeout=float(section.get("timeout", DEFAULT_TIMEOUT)), parallel=int(section.get("parallel", 1)),
                  cxx=cxx, flags=tuple(flags), source=source)
    if kind != "rpc":
        return RunnerSpec(kind=kind, **common)
    for name, example in (("tracker", "10.0.0.5:9190"), ("key", "rpi4")):
        if not section.get(name):
            raise InputError(f"{source}: tuning.runner.{name}: missing; runner kind 'rpc' needs tuning.runner.tracker "
                             f"(HOST:PORT) and tuning.runner.key (the servers' --key), e.g. {name}: {example}")
    host, port = parse_tracker(section["tracker"], f"{source}: tuning.runner.tracker")
    return RunnerSpec(kind=kind, host=host, port=port, key=section["key"], **common)

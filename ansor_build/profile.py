"""Where a package's time goes: each kernel it launches, timed alone, against one whole call of the model.

One call of the model runs under a VM instrument that records every function the VM calls with its arguments;
each kernel (a compiled subgraph, not a VM builtin) is then timed alone on those arguments with TVM's C++ timing
loop. What a whole call takes beyond the kernels' sum is the VM's own work and the thread pool's launches.
Runs packages built for this machine's CPU (the build host's TVM loads them).
"""

from __future__ import annotations

import os
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .errors import AnsorError

PREPACKED_SUFFIX = "_prepacked"  # SplitLayoutRewritePreproc's name for a kernel that reads packed weights


@dataclass
class KernelTime:
    name: str
    calls: int  # launches per model call
    us: float  # median time of one launch
    record_us: float | None = None  # what tuning measured for its task (manifest), if a record was applied

    @property
    def total_us(self) -> float:
        return self.us * self.calls


@dataclass
class Profile:
    model_us: float  # median latency of one whole call
    kernels: list[KernelTime] = field(default_factory=list)
    threads: str | None = None

    @property
    def kernels_us(self) -> float:
        return sum(k.total_us for k in self.kernels)

    @property
    def overhead_us(self) -> float:
        return self.model_us - self.kernels_us

    def as_dict(self) -> dict:
        return {"model_us": round(self.model_us, 3), "kernels_us": round(self.kernels_us, 3),
                "overhead_us": round(self.overhead_us, 3), "threads": self.threads,
                "kernels": [{"name": k.name, "calls": k.calls, "us": round(k.us, 3), "total_us": round(k.total_us, 3),
                             "record_us": k.record_us} for k in self.kernels]}

    def table(self) -> str:
        width = max([len(k.name) for k in self.kernels] + [24])
        lines = [f"{'kernel':<{width}} {'calls':>5} {'us/call':>9} {'total us':>9} {'share':>6} {'tuned us':>9}"]
        for k in self.kernels:
            record = f"{k.record_us:.1f}" if k.record_us is not None else "-"
            lines.append(f"{k.name:<{width}} {k.calls:>5} {k.us:>9.2f} {k.total_us:>9.2f} "
                         f"{k.total_us / self.model_us:>6.0%} {record:>9}")

        def total(label: str, us: float) -> str:
            return f"{label:<{width}} {'':>5} {'':>9} {us:>9.2f} {us / self.model_us:>6.0%}"

        lines += [total("kernels", self.kernels_us), total("VM and thread-pool overhead", self.overhead_us),
                  total("model (one call)", self.model_us)]
        return "\n".join(lines)


def profile_package(directory: str | Path, repeat: int = 200, rounds: int = 5) -> Profile:
    """Time the package's kernels one by one and one whole call (medians over `rounds` of `repeat` runs)."""
    from .package import loader
    from .package.manifest import read_manifest
    from .toolchain import host_arch

    directory = Path(directory)
    manifest = read_manifest(directory)
    target = manifest.get("target", {})
    if target.get("device", "cpu") != "cpu" or (target.get("arch") and target["arch"] != host_arch()):
        raise AnsorError(f"{directory}: profile runs CPU packages built for this machine ({host_arch()}); this one "
                         f"is for {target.get('arch')} {target.get('device', 'cpu')}")
    if manifest.get("runtime", {}).get("vm") == "compiled":
        raise AnsorError(f"{directory}: built with runtime.vm 'compiled', whose kernel launches the VM profiler cannot "
                         f"see; build it with `runtime: {{vm: bytecode}}` in the target to profile it")
    package = loader.load(directory)  # sets TVM_NUM_THREADS as the package's loaders do, before TVM starts
    arrays = package.default_inputs()
    calls = _capture_calls(package, package.prepare(*arrays))
    counts = Counter(name for name, _ in calls if not name.startswith(("vm.builtin.", "relax.")))
    if not counts:
        raise AnsorError(f"{directory}: the model launched no kernels")
    library = package.module.imports[0]  # the compiled subgraphs
    # the thread pool started and the clock up before any timing
    package.benchmark(arrays, warmup=20, repeat=1, kernels=True)
    by_name: dict[str, list[float]] = {}
    for name, args in calls:
        if name in counts and name not in by_name:
            timer = library.time_evaluator(name, package.device, number=repeat, repeat=rounds, min_repeat_ms=1)
            timer(*args)  # warm-up: the first timing of a process ran up to 3x slow (1.8 us kernels timed at 5 us)
            by_name[name] = list(timer(*args).results)

    model = [statistics.median(package.benchmark(arrays, warmup=10, repeat=repeat, kernels=True))
             for _ in range(rounds)]
    records = {task["name"]: task.get("record_us") for task in manifest.get("tasks", [])}
    rows = [KernelTime(name, counts[name], statistics.median(times) * 1e6,
                       records.get(name.removesuffix(PREPACKED_SUFFIX)))
            for name, times in by_name.items()]
    rows.sort(key=lambda k: -k.total_us)
    return Profile(statistics.median(model) * 1e6, rows, os.environ.get("TVM_NUM_THREADS"))


def _capture_calls(package, tensors) -> list[tuple[str, list]]:
    """Every function one call of the model makes, with its arguments, in order (a VM with an instrument)."""
    from tvm.runtime.vm import VirtualMachine

    vm = VirtualMachine(package.module, package.device)
    calls = []

    def instrument(_func, symbol, before_run, _ret, *args):
        if before_run:
            calls.append((str(symbol), list(args)))
        return 0  # VMInstrumentReturnKind.NO_OP

    vm.set_instrument(instrument)
    vm["main"](*tensors)
    return calls

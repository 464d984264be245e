"""The `ansor-build` command line: build, run, inspect and check packages."""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import signal
import sys
from pathlib import Path

from . import interrupt
from .errors import AnsorError
from .version import __version__

log = logging.getLogger("ansor_build")


def _shapes(values: list[str]) -> dict[str, list[int]]:
    from .model import parse_shapes

    return parse_shapes(" ".join(values))


def _tuning(args, default_mode: str):
    from .target import load_target
    from .tuning.options import resolve_options

    return resolve_options(load_target(args.target), mode=args.tune or default_mode, tuning_dir=args.tuning_dir,
                           trials=args.trials, trials_per_task=args.trials_per_task, time_budget=args.time_budget)


def cmd_build(args) -> int:
    from .build import build_package

    tuning = None if args.records else _tuning(args, "incremental" if args.tuning_dir else "off")
    result = build_package(args.model, args.target, args.output, shapes=_shapes(args.shape), tuning=tuning,
                           records_file=args.records)
    if args.archive:
        from .package.archive import write_archive

        log.info("wrote %s", write_archive(result.package))
    t = result.timings
    log.info("built %s (%d subgraphs, %d with records; import %.1fs, tune %.1fs, compile %.1fs, package %.1fs)",
             result.package, len(result.tasks), result.manifest["tuning"]["records"], t["import"], t["tune"],
             t["compile"], t["package"])
    return 0


def cmd_tune(args) -> int:
    from .build import tune_model

    tune_model(args.model, args.target, _tuning(args, "incremental"), args.records_out, shapes=_shapes(args.shape))
    return 0


def cmd_run(args) -> int:
    import numpy as np

    from .package import loader
    from .package.manifest import read_manifest
    from .toolchain import host_arch

    manifest = read_manifest(Path(args.package))  # one-line errors for a missing or foreign directory
    target = manifest.get("target")
    arch = target.get("arch") if isinstance(target, dict) else None
    if arch and arch != host_arch():
        raise AnsorError(f"{args.package}: this {arch} package runs on its device (bin/ansor_runner, loader.py); "
                         f"here, `ansor-build check {args.package} --model MODEL.onnx` runs it under its emulator")
    try:  # the loader's errors (a damaged package, a bad --input) are one line naming the file
        arrays = loader.read_inputs(loader.read_manifest(args.package)["inputs"], args.input)
        package = loader.load(args.package)  # checks model.so and runtime/ against the manifest first
    except (OSError, ValueError) as err:
        raise AnsorError(str(err)) from None
    try:
        outputs = package(*arrays)
        times = package.benchmark(arrays, args.warmup, args.repeat) if args.repeat > 0 else []
    except Exception as err:  # noqa: BLE001 - TVM's errors are of many types (RuntimeError, TypeError, ...)
        raise AnsorError(f"{args.package}: running the model failed: {loader.first_line(err)}") from None
    if args.save:
        try:
            np.savez(args.save, **{f"output_{i}": out for i, out in enumerate(outputs)})
        except OSError as err:
            raise AnsorError(f"{args.save}: cannot write the outputs: {err.strerror or err}") from None
    result = loader.summary(package, outputs, times)
    print(json.dumps(result, indent=2) if args.json else loader.format_summary(result))
    return 0


def cmd_profile(args) -> int:
    from .profile import profile_package

    if args.repeat < 1 or args.rounds < 1:
        raise AnsorError(f"profile: --repeat and --rounds must be at least 1 (got {args.repeat}, {args.rounds})")
    profile = profile_package(Path(args.package), repeat=args.repeat, rounds=args.rounds)
    print(json.dumps(profile.as_dict(), indent=2) if args.json else profile.table())
    return 0


def cmd_inspect(args) -> int:
    from .build import prepare
    from .tuning import make_plan, open_store

    from .target import load_target

    options = _tuning(args, "incremental" if args.tuning_dir else "off")
    prepared = prepare(Path(args.model), load_target(args.target), _shapes(args.shape), tuned=bool(args.tuning_dir))
    target, tasks = prepared.target, prepared.tasks
    store = open_store(options.tuning_dir, target.tuned_tvm()) if options.tuning_dir else None
    plan = make_plan(tasks, store, options)
    flops = {task.key: task.flops for task in tasks}
    if args.json:
        rows = [dict(row.as_dict(), flops=flops[row.key]) for row in plan.tasks]
        print(json.dumps({"model": str(prepared.model.path), "target": target.name,
                          "tuning_dir": str(store.directory) if store else None, "plan": plan.line(),
                          "tasks": rows}, indent=2))
        return 0
    print(f"{prepared.model.path} for {target.name}: {plan.line()}")
    print(f"{'key':<16}  {'weight':>6}  {'MFLOP':>9}  {'status':<11}  {'trials':>6}  {'best':>10}  name")
    for row in plan.tasks:
        mflop = f"{flops[row.key] / 1e6:9.3f}" if flops[row.key] is not None else f"{'?':>9}"
        best = f"{row.best_us:.1f} us" if row.best_us is not None else "-"
        print(f"{row.key:<16}  {row.weight:>6}  {mflop}  {row.status:<11}  {row.trials:>6}  {best:>10}  {row.name}")
    return 0


def cmd_check(args) -> int:
    from .check import check_package

    result = check_package(args.package, args.model, repeat=args.repeat)
    print(result.line())
    if args.stamp:
        Path(args.stamp).write_text(result.line() + "\n", encoding="utf-8")
    return 0 if result.ok else 1


def cmd_devices(args) -> int:
    from .backend import tracker
    from .target.runner import parse_tracker

    host, port = parse_tracker(args.tracker, "--tracker")
    keys = tracker.device_keys(host, port, timeout=args.timeout)
    if args.json:
        print(json.dumps({"tracker": f"{host}:{port}", "keys": [k.as_dict() for k in keys.values()]}, indent=2))
    elif keys:
        print(f"tracker {host}:{port}\n{tracker.format_table(keys)}")
    else:
        print(f"tracker {host}:{port}: no devices (start servers with: python3 -m tvm.exec.rpc_server "
              f"--tracker {host}:{port} --key KEY)")
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ansor-build", description="Compile ONNX models into tuned, packaged "
                                     "shared libraries for x86, ARM and NVIDIA GPU devices.")
    parser.add_argument("--version", action="version", version=f"ansor-build {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def model_args(p):
        p.add_argument("model", help="ONNX model file")
        p.add_argument("--target", "-t", required=True, help="target YAML file (see targets/)")
        p.add_argument("--shape", action="append", default=[], metavar="NAME=D0,D1,...",
                       help="static shape for an input with symbolic dims (repeatable)")

    def tuning_args(p):
        g = p.add_argument_group("tuning")
        g.add_argument("--tuning-dir", metavar="DIR", help="tuning records (one database per target inside)")
        g.add_argument("--tune", choices=("off", "reuse", "incremental", "full"),
                       help="off: default schedules; reuse: apply records, never measure; incremental: tune only "
                            "new or under-tuned subgraphs (default with --tuning-dir); full: tune all again")
        g.add_argument("--trials", type=int, metavar="N", help="cap on trials measured by this build")
        g.add_argument("--trials-per-task", type=int, metavar="N", help="trials that make a subgraph fully tuned")
        g.add_argument("--time-budget", type=float, metavar="SECONDS", help="wall-clock budget for tuning")

    p = sub.add_parser("build", help="compile a model into a package directory (tuning first, if asked)")
    model_args(p)
    p.add_argument("--output", "-o", required=True, help="package directory to write (replaced atomically)")
    tuning_args(p)
    p.add_argument("--records", metavar="FILE", help="apply exactly these records (written by `tune`); no tuning")
    p.add_argument("--archive", action="store_true", help="also write OUT.tar.gz (reproducible; see `verify`)")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("tune", help="tune a model's new or changed subgraphs; write the records a build applies")
    model_args(p)
    tuning_args(p)
    p.add_argument("--records-out", required=True, metavar="FILE", help="applied records (rewritten only on change)")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("run", help="load a package in this process, run it, print outputs and latency")
    p.add_argument("package")
    p.add_argument("--input", action="append", default=[], metavar="[NAME=]FILE.npy")
    p.add_argument("--save", metavar="OUT.npz")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeat", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("inspect", help="list the model's fused subgraphs (tuning tasks) and the tuning plan")
    model_args(p)
    tuning_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("check", help="run a package in a fresh process and compare with onnxruntime")
    p.add_argument("package")
    p.add_argument("--model", required=True, help="the ONNX model the package was built from")
    p.add_argument("--repeat", type=int, default=0, help="also time both over N runs")
    p.add_argument("--stamp", help="write the result line to this file (for build systems)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("profile", help="time each kernel of a package alone against one whole call (where the time "
                                       "goes)")
    p.add_argument("package")
    p.add_argument("--repeat", type=int, default=200, help="runs per timing round")
    p.add_argument("--rounds", type=int, default=5, help="timing rounds (medians are reported)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("devices", help="list the device keys of a TVM RPC tracker (free/pending/total)")
    p.add_argument("--tracker", required=True, metavar="HOST:PORT", help="the tracker, e.g. 10.0.0.5:9190")
    p.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS", help="wait at most this long (5)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_devices)

    from .cli_release import add_commands

    add_commands(sub, model_args, tuning_args)  # explain, archive, verify, db
    return parser


def _terminate(signum, _frame):
    interrupt.request_stop(signum)  # nothing imported here: an import inside a handler is where Python drops its error


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.ERROR if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="ansor-build: %(message)s")
    signal.signal(signal.SIGTERM, _terminate)  # run cleanups (staging directories) on SIGTERM as on Ctrl-C
    signal.signal(signal.SIGINT, _terminate)  # recorded too: see ansor_build.interrupt
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 PID`: every thread's stack to stderr (a build that seems stuck)
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        code = args.func(args)
        interrupt.check_stop()  # a stop whose KeyboardInterrupt Python dropped (raised in a weakref callback)
        return code
    except AnsorError as err:
        print(f"ansor-build: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ansor-build: interrupted", file=sys.stderr)
        return 130

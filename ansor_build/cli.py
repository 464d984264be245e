"""The `ansor-build` command line: build, run, inspect and check packages."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from .errors import AnsorError
from .version import __version__

log = logging.getLogger("ansor_build")


def _shapes(values: list[str]) -> dict[str, list[int]]:
    from .model import parse_shapes

    return parse_shapes(" ".join(values))


def cmd_build(args) -> int:
    from .build import build_package

    result = build_package(args.model, args.target, args.output, shapes=_shapes(args.shape))
    t = result.timings
    log.info("built %s (%d subgraphs; import %.1fs, compile %.1fs, package %.1fs)", result.package,
             len(result.tasks), t["import"], t["compile"], t["package"])
    return 0


def cmd_run(args) -> int:
    import numpy as np

    from .package import loader
    from .package.manifest import read_manifest

    read_manifest(Path(args.package))  # one-line errors for a missing or foreign directory
    package = loader.load(args.package)
    arrays = loader._read_inputs(package, args.input) if args.input else package.default_inputs()
    try:
        outputs = package(*arrays)
    except ValueError as err:
        raise AnsorError(f"{args.package}: {err}") from None
    times = package.benchmark(arrays, args.warmup, args.repeat) if args.repeat > 0 else []
    if args.save:
        np.savez(args.save, **{f"output_{i}": out for i, out in enumerate(outputs)})
    result = loader.summary(package, outputs, times)
    print(json.dumps(result, indent=2) if args.json else loader.format_summary(result))
    return 0


def cmd_inspect(args) -> int:
    from . import backend
    from .backend import frontend, partition
    from .model import load_model
    from .target import load_target

    target = load_target(args.target)
    model = load_model(args.model, _shapes(args.shape))
    tvm_target = backend.make_target(target.tvm)
    fused = partition.fuse(frontend.import_onnx(model), tvm_target)
    tasks, _ = partition.extract_tasks(fused, tvm_target)
    if args.json:
        print(json.dumps({"model": str(model.path), "target": target.name, "target_key": target.key(),
                          "tasks": [task.as_dict() for task in tasks]}, indent=2))
        return 0
    print(f"{model.path} for {target.name}: {len(tasks)} tasks ({sum(t.weight for t in tasks)} subgraph calls)")
    print(f"{'key':<16}  {'weight':>6}  {'MFLOP':>9}  name")
    for task in tasks:
        mflop = f"{task.flops / 1e6:9.3f}" if task.flops is not None else f"{'?':>9}"
        print(f"{task.key:<16}  {task.weight:>6}  {mflop}  {task.name}")
    return 0


def cmd_check(args) -> int:
    from .check import check_package

    result = check_package(args.package, args.model, repeat=args.repeat)
    print(result.line())
    if args.stamp:
        Path(args.stamp).write_text(result.line() + "\n", encoding="utf-8")
    return 0 if result.ok else 1


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

    p = sub.add_parser("build", help="compile a model into a package directory")
    model_args(p)
    p.add_argument("--output", "-o", required=True, help="package directory to write (replaced atomically)")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("run", help="load a package in this process, run it, print outputs and latency")
    p.add_argument("package")
    p.add_argument("--input", action="append", default=[], metavar="[NAME=]FILE.npy")
    p.add_argument("--save", metavar="OUT.npz")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeat", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("inspect", help="list the model's fused subgraphs (tuning tasks) for a target")
    model_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("check", help="run a package in a fresh process and compare with onnxruntime")
    p.add_argument("package")
    p.add_argument("--model", required=True, help="the ONNX model the package was built from")
    p.add_argument("--repeat", type=int, default=0, help="also time both over N runs")
    p.add_argument("--stamp", help="write the result line to this file (for build systems)")
    p.set_defaults(func=cmd_check)
    return parser


def _terminate(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.ERROR if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="ansor-build: %(message)s")
    signal.signal(signal.SIGTERM, _terminate)  # run cleanups (staging directories) on SIGTERM as on Ctrl-C
    try:
        return args.func(args)
    except AnsorError as err:
        print(f"ansor-build: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ansor-build: interrupted", file=sys.stderr)
        return 130

"""Release commands of the `ansor-build` command line: explain, archive, verify, and the `db` record-store tools."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .errors import InputError

log = logging.getLogger("ansor_build")


def cmd_explain(args) -> int:
    from .cli import _shapes
    from .explain import explain, format_steps

    flags = " ".join(f"{flag} {value}" for flag, value in (("--trials", args.trials),
                                                          ("--trials-per-task", args.trials_per_task),
                                                          ("--time-budget", args.time_budget)) if value is not None)
    steps = explain(Path(args.model), Path(args.target), shapes=_shapes(args.shape), output=args.output,
                    mode=args.tune, tuning_dir=Path(args.tuning_dir), budget_flags=flags)
    print(json.dumps([s.as_dict() for s in steps], indent=2) if args.json else format_steps(steps))
    return 0


def cmd_archive(args) -> int:
    from .package.archive import write_archive

    log.info("wrote %s", write_archive(Path(args.package), Path(args.output) if args.output else None))
    return 0


def cmd_verify(args) -> int:
    from .package.verify import verify

    result = verify(args.package)
    if not result.ok:
        raise InputError(result.line())
    print(result.line())
    return 0


def _target_tvm(args) -> dict | None:
    from .target import load_target

    return load_target(args.target).tuned_tvm() if getattr(args, "target", None) else None


def cmd_db_merge(args) -> int:
    from .tuning import targetdir
    from .tuning.merge import merge

    tvm = _target_tvm(args)
    result = merge([targetdir.resolve_one(d, tvm) for d in args.dirs], Path(args.output), tvm)
    print(f"{result.output}: {result.workloads} workloads, {result.records} records, {result.task_lists} task lists "
          f"from {len(result.inputs)} directories ({result.written} files written)")
    return 0


def cmd_db_stats(args) -> int:
    from .tuning import targetdir
    from .tuning.stats import format_stats, store_stats

    tvm = _target_tvm(args)
    stats = [store_stats(d, tvm) for d in targetdir.resolve(args.dir, tvm)]
    print(json.dumps(stats, indent=2) if args.json else "\n\n".join(format_stats(s) for s in stats))
    return 0


def cmd_db_prune(args) -> int:
    from .cli import _shapes
    from .target import load_target
    from .tuning import targetdir
    from .tuning.prune import apply_prune, check_target, model_keys, plan_prune, records_keys

    if not args.keep_models and not args.keep_records:
        raise InputError("db prune: nothing to keep given; pass --keep-models M.onnx ... --target T.yaml and/or "
                         "--keep-records PACKAGE.records.json ...")
    if args.keep_models and not args.target:
        raise InputError("db prune: --keep-models needs --target T.yaml (tasks depend on the target)")
    target = load_target(args.target) if args.target else None
    tvm = target.tuned_tvm() if target else _records_target(args)
    directory = targetdir.resolve_one(args.dir, tvm)
    store_tvm = targetdir.read_target(directory, tvm)
    keep: set[str] = set()
    if target is not None:
        check_target(directory, store_tvm, target.tuned_tvm(), str(args.target))
        shapes = _shapes(args.shape)

        def partition(model):
            from .build import prepare

            return [task.key for task in prepare(model, target, shapes, tuned=True).tasks]

        keep |= model_keys([Path(m) for m in args.keep_models], shapes, directory, partition)
    keep |= records_keys([Path(r) for r in args.keep_records], store_tvm)
    plan = plan_prune(directory, keep)
    if args.apply:
        apply_prune(plan)
    print("\n".join(plan.lines(applied=args.apply)))
    return 0


def _records_target(args) -> dict | None:
    """The target of the first records file (picks the target directory of a tuning root)."""
    from .tuning.driver import records_file_target

    if not args.keep_records:
        return None
    target = records_file_target(Path(args.keep_records[0]))  # None: reported when the file is read for its tasks
    return target if isinstance(target, dict) else None


def add_commands(sub, model_args, tuning_args) -> None:
    """Add explain, archive, verify and db to the `ansor-build` parser's subcommands."""
    p = sub.add_parser("explain", help="list every input of a package's build (and CacheDir) key with its hash")
    model_args(p)
    tuning_args(p)
    p.set_defaults(tune="off")
    p.add_argument("--output", "-o", default="PACKAGE", help="the package directory as the SConstruct names it "
                   "(it is in the command line SCons hashes)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_explain, tuning_dir="tuning")

    p = sub.add_parser("archive", help="write a package directory as a reproducible PACKAGE.tar.gz")
    p.add_argument("package")
    p.add_argument("--output", "-o", help="archive path (default: PACKAGE.tar.gz beside the directory)")
    p.set_defaults(func=cmd_archive)

    p = sub.add_parser("verify", help="check a package directory or .tar.gz against its manifest's hashes")
    p.add_argument("package")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("db", help="tuning record store tools: merge, stats, prune")
    db = p.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    target_help = "target YAML: picks its directory in a tuning directory that holds several"

    p = db.add_parser("merge", help="merge target directories of one target (deduplicated, best records kept)")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="target directory, or tuning directory holding one")
    p.add_argument("--output", "-o", required=True, metavar="OUT",
                   help="target directory to write or merge into; an existing other directory receives it")
    p.add_argument("--target", "-t", help=target_help)
    p.set_defaults(func=cmd_db_merge)

    p = db.add_parser("stats", help="workloads, records, trials and best latency per task")
    p.add_argument("dir", metavar="DIR", help="tuning directory (all its targets) or one target directory")
    p.add_argument("--target", "-t", help=target_help)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_db_stats)

    p = db.add_parser("prune", help="drop records of workloads no kept model uses (dry run unless --apply)")
    p.add_argument("dir", metavar="DIR", help="tuning directory or target directory")
    p.add_argument("--keep-models", nargs="+", default=[], metavar="MODEL", help="models whose tasks are kept")
    p.add_argument("--target", "-t", help="the target the models are built for (required with --keep-models)")
    p.add_argument("--shape", action="append", default=[], metavar="NAME=D0,D1,...",
                   help="static shape for inputs with symbolic dims (applies to every model)")
    p.add_argument("--keep-records", nargs="+", default=[], metavar="RECORDS",
                   help="records files (PACKAGE.records.json) whose tasks are kept")
    p.add_argument("--apply", action="store_true", help="delete the files (default: only print them)")
    p.set_defaults(func=cmd_db_prune)

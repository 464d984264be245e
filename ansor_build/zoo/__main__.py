"""``python -m ansor_build.zoo OUTDIR [NAME ...] [--variant N] [--dynamic-batch]``: write OUTDIR/NAME.onnx."""

from __future__ import annotations

import argparse
import pathlib
import sys

from ansor_build.errors import AnsorError

from . import NAMES, get_spec, write_model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ansor_build.zoo", description="Write the zoo's ONNX models.")
    p.add_argument("outdir", type=pathlib.Path)
    p.add_argument("names", nargs="*", metavar="NAME", help=f"models to write (default: all of {', '.join(NAMES)})")
    p.add_argument("--variant", type=int, default=0, help="re-seed and reshape one layer (see each model's doc)")
    p.add_argument("--dynamic-batch", action="store_true", help="make dim 0 of input and output symbolic 'batch'")
    args = p.parse_args(argv)
    try:
        names = args.names or list(NAMES)
        for name in names:
            get_spec(name)  # fail before writing anything
        for name in names:
            path = write_model(name, args.outdir / f"{name}.onnx", variant=args.variant,
                               dynamic_batch=args.dynamic_batch)
            print(path)
    except AnsorError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

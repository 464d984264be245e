"""Reading JSON files from disk with one-line errors, whatever the file holds.

Manifests, records files, the store's files and target.json come from other machines, branches, CI caches and
uploads: binary garbage, a directory or device in their place, gigabytes, nesting deep enough to exhaust Python's
stack, `NaN` (which Python's json accepts) are all reported as `path: what is wrong` (InputError), never a
traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import InputError


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def read_text(path: Path, missing: str, max_bytes: int) -> str:
    """The text of a regular file of at most `max_bytes` bytes, UTF-8; `missing` follows the path when absent."""
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():  # a device or FIFO would never end
        raise InputError(f"{path}: not a regular file")
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise InputError(f"{path}: {missing}") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a file") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read: {err.strerror or err}") from None
    if len(data) > max_bytes:
        raise InputError(f"{path}: larger than {max_bytes >> 20} MiB, more than such a file can hold (damaged, or "
                         f"not the right file)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text (byte {err.start}): damaged, or not the right file") from None


def parse(text: str, one_line: bool = False):
    """Strict JSON (no NaN / Infinity); ValueError with a short reason otherwise (RecursionError included).

    `one_line`: the text is one line of a JSON-lines file (the reason names only the column).
    """
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        where = f"at column {err.colno}" if one_line else f"at line {err.lineno} column {err.colno}"
        raise ValueError(f"invalid JSON ({err.msg} {where})") from None
    except RecursionError:
        raise ValueError("invalid JSON: nested too deeply") from None
    except ValueError as err:  # parse_constant, or an integer of too many digits
        raise ValueError(f"invalid JSON: {str(err).splitlines()[0][:120]}") from None


MAX_BYTES = 64 << 20  # default cap: the largest JSON ansor-build writes (a records file, a manifest) is far smaller


def load_json(path: Path, missing: str, max_bytes: int = MAX_BYTES):
    """The parsed file; `missing` is the message (after the path) when it does not exist."""
    return load(path, missing, max_bytes)


def load(path: Path, missing: str, max_bytes: int):
    """The parsed JSON document of a file (see `read_text` and `parse`; one-line InputErrors)."""
    text = read_text(path, missing, max_bytes)
    try:
        return parse(text)
    except ValueError as err:
        raise InputError(f"{path}: {err}") from None

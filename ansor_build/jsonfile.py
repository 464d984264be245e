"""Reading the JSON files ansor-build writes (manifests, records files, target.json) with one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import InputError


def load_json(path: Path, missing: str):
    """The parsed file; `missing` is the message (after the path) when it does not exist."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: {missing}") from None
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}") from None

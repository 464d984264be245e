"""The local cache directory of ansor-build (reusable intermediate results; safe to delete at any time)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$ANSOR_BUILD_CACHE_DIR`, else `$XDG_CACHE_HOME/ansor-build`, else `~/.cache/ansor-build`."""
    explicit = os.environ.get("ANSOR_BUILD_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ansor-build"

"""Where ansor-build finds its own data: target presets, the SCons tool, the runner sources."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
_CHECKOUT = PACKAGE_DIR.parent


def presets_dir() -> Path:
    """The directory of target presets (`targets/` of the ansor-build checkout)."""
    return _CHECKOUT / "targets"


def scons_toolpath() -> str:
    """The directory to pass as SCons `toolpath` so that `tools=["ansor"]` finds the tool."""
    return str(_CHECKOUT / "site_scons" / "site_tools")

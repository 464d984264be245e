"""Where ansor-build finds its own data: target presets, the SCons tool, the runner sources.

The presets and the SCons tool live in the repository at `targets/` and `site_scons/site_tools/ansor/` (where the
in-repo SConstruct and examples find them); pyproject.toml maps them into the package as `ansor_build/targets/` and
`ansor_build/site_tools/ansor/`, so a wheel install (a product repo's dependency) carries them. One copy of each
file; each function below answers for both layouts: the installed package's first, else the checkout's (editable).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
_CHECKOUT = PACKAGE_DIR.parent


def _data_dir(in_package: str, in_checkout: str) -> Path:
    """`ansor_build/<in_package>` of an installed wheel, else `<in_checkout>` of the ansor-build checkout."""
    packaged = PACKAGE_DIR / in_package
    return packaged if packaged.is_dir() else _CHECKOUT / in_checkout


def presets_dir() -> Path:
    """The directory of target presets (`ansor_build/targets/` installed, `targets/` in the checkout)."""
    return _data_dir("targets", "targets")


def scons_toolpath() -> str:
    """The directory to pass as SCons `toolpath` so that `tools=["ansor"]` finds the tool
    (`ansor_build/site_tools/` installed, `site_scons/site_tools/` in the checkout)."""
    return str(_data_dir("site_tools", "site_scons/site_tools"))

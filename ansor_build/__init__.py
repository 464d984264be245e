"""ansor-build: compile ONNX models with Apache TVM into tuned, packaged artifacts for x86, ARM and NVIDIA GPUs.

The public API is small; everything else is private machinery. Importing this package does not import TVM.
"""

from .errors import AnsorError, InputError, ToolError
from .version import __version__


def build_package(*args, **kwargs):
    """Compile a model for a target into a package directory (see `ansor_build.build.build_package`)."""
    from .build import build_package as _build

    return _build(*args, **kwargs)


def load_target(path):
    """Load and validate a target YAML file (see `ansor_build.target.load_target`)."""
    from .target import load_target as _load

    return _load(path)


def scons_toolpath() -> str:
    """Pass as SCons `toolpath` to use `tools=["default", "ansor"]`."""
    from .paths import scons_toolpath as _toolpath

    return _toolpath()


__all__ = ["AnsorError", "InputError", "ToolError", "__version__", "build_package", "load_target", "scons_toolpath"]

"""The C++ runner shipped in every package as ``bin/ansor_runner`` (sources live in this directory)."""

from ansor_build.runner.build import RUNNER_SOURCE_DIR, build_runner, runner_command, runner_sources

__all__ = ["RUNNER_SOURCE_DIR", "build_runner", "runner_command", "runner_sources"]

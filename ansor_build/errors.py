"""Errors that ansor-build reports to people as one line (no traceback)."""

from __future__ import annotations


class AnsorError(Exception):
    """A known failure; ``str(err)`` is a complete one-line message a user can act on."""


class InputError(AnsorError):
    """Bad user input: a model, target description, option or path."""


class ToolError(AnsorError):
    """An external tool (compiler, linker, TVM pass) failed.

    Keeps the command, its exit code and where the full log is, so the message says how to see more.
    """

    def __init__(self, what: str, command: list[str] | str, returncode: int | None, log_path: str | None = None,
                 detail: str = ""):
        self.command = command if isinstance(command, str) else " ".join(command)
        self.returncode = returncode
        self.log_path = log_path
        msg = f"{what} failed"
        if returncode is not None:
            msg += f" (exit code {returncode})"
        msg += f": {self.command}"
        if detail:
            msg += f": {detail}"
        if log_path:
            msg += f" (full log: {log_path})"
        super().__init__(msg)

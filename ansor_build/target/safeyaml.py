"""Reading a target file as hostile input: a size cap, and YAML parsing whose work is bounded by the file's size.

`yaml.safe_load` constructs only plain data, but a 500-byte file of nested aliases (`&a [*a, *a, ...]`) expands into
billions of shared references, which anything that walks the value (repr, json, a merge) turns into minutes and
gigabytes; ten thousand `[` exhaust Python's recursion. Target files are a few hundred bytes of flat mappings, so the
limits here are far above any real one.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1 << 20  # a target file is a few hundred bytes
MAX_NODES = 10_000  # YAML nodes of one document, every alias counted at the full size of what it names
MAX_TEXT = MAX_BYTES  # characters of all scalars of one document, aliases counted likewise
MAX_DEPTH = 32  # nested collections (the schema's deepest key is 3 levels down: tuning.runner.kind)
MAX_NUMBER = 100  # characters of one number (int("1:2:3:...") of YAML 1.1 takes quadratic time in its length)

_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


class LimitError(Exception):
    """The file goes past one of this module's limits; `str(err)` says where and which (no file content)."""


class NotText(Exception):
    """The file is not UTF-8 text; `str(err)` says where (no file content)."""


def read_text(path: Path) -> str:
    """The text of the regular file `path`, at most MAX_BYTES of UTF-8.

    Raises FileNotFoundError (no such file), LimitError (too large), NotText (not UTF-8) and OSError with a
    `strerror` (anything else, a directory or device included).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)  # non-blocking: opening a FIFO does not wait for a writer
    except ValueError:  # a NUL byte in the name
        raise OSError(0, "the name contains a NUL byte") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise OSError(0, "it is a directory, not a target file")
        if not stat.S_ISREG(info.st_mode):
            raise OSError(0, "not a regular file")
        if info.st_size > MAX_BYTES:
            raise LimitError(f"{info.st_size} bytes, more than a target file may have ({MAX_BYTES})")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as file:
        data = file.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise LimitError(f"more than the {MAX_BYTES} bytes a target file may have")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise NotText(f"not UTF-8 text (byte {err.start} is not UTF-8)") from None


def parse(text: str) -> Any:
    """One YAML document, safely constructed (plain data only) within MAX_NODES, MAX_TEXT and MAX_DEPTH.

    Raises yaml.YAMLError (invalid YAML, values YAML cannot construct) and LimitError.
    """
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _line(node_or_event) -> str:
    mark = getattr(node_or_event, "start_mark", None)
    return f"line {mark.line + 1}: " if mark is not None else ""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts, as it composes, the nodes and scalar characters of the document with every alias
    expanded: a node counts once when it starts, an alias the full size of the node it names.

    The count is what any walk of the constructed value visits; composing stops at the first node past a limit, long
    before anything large exists (aliases share nodes).
    """

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0
        self._chars = 0
        self._aliased = False

    def _count(self, nodes: int, chars: int, at) -> None:
        self._nodes += nodes
        self._chars += chars
        if self._nodes > MAX_NODES or self._chars > MAX_TEXT:
            what = f"{MAX_NODES} nodes" if self._nodes > MAX_NODES else f"{MAX_TEXT} characters"
            if self._aliased:
                raise LimitError(f"{_line(at)}YAML aliases expand beyond {what} (an alias bomb?)")
            raise LimitError(f"{_line(at)}the YAML has more than {what} (a target file has a few dozen nodes)")

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)
            size = getattr(node, "_ansor_size", None)
            if size is None:  # named while still open: `&a [*a]`
                raise LimitError(f"{_line(event)}a YAML alias refers to a collection that contains it "
                                 f"(a recursive structure)")
            self._aliased = True
            self._count(*size, event)
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise LimitError(f"{_line(event)}YAML collections nested deeper than {MAX_DEPTH} levels")
        self._count(1, 0, event)
        node = super().compose_node(parent, index)
        self._depth -= 1
        if isinstance(node, yaml.ScalarNode):
            size = (1, len(node.value))
            self._count(0, size[1], node)
        else:  # the expanded size of a collection, for the aliases that name it
            children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
            size = (1 + sum(child._ansor_size[0] for child in children),
                    sum(child._ansor_size[1] for child in children))
        node._ansor_size = size
        return node

    def construct_object(self, node, deep=False):
        if isinstance(node, yaml.ScalarNode) and node.tag in _NUMBER_TAGS and len(node.value) > MAX_NUMBER:
            raise LimitError(f"{_line(node)}a number of {len(node.value)} characters (at most {MAX_NUMBER})")
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError) as err:
            # e.g. `2020-13-45` (an implicit timestamp), `!!int x`: say where, not the text Python quotes
            tag = node.tag.replace("tag:yaml.org,2002:", "!!") if node.tag.startswith("tag:yaml.org,2002:") else ""
            problem = f"not a valid {tag or 'value of its tag'} ({type(err).__name__}; quote it to make it a string)"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None

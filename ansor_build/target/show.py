"""Bounded text of values read from target files, for one-line error messages.

A target file is hostile input: a value may be a huge string, a list nested thousands deep or a structure that YAML
aliases share a billion times over. Nothing here builds more than a few hundred characters, whatever the value.
"""

from __future__ import annotations

import datetime
from typing import Any, Iterator

_NAMES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping",
          type(None): "null", bytes: "binary", set: "set", tuple: "pair", datetime.date: "date",
          datetime.datetime: "timestamp"}
_DEPTH = 4  # levels of a collection shown before "..."
_ITEMS = 8  # items of one collection shown before "..."


def kind_name(value: Any) -> str:
    """What a YAML value is, in words ("string", "list", ...)."""
    return _NAMES.get(type(value), type(value).__name__)


def shown(value: Any, limit: int = 40) -> str:
    """`repr(value)` cut to `limit` characters (ending "..." when cut), built piece by piece: never more than
    about `limit` characters, however large or deep the value (recursive structures included)."""
    pieces: list[str] = []
    used = 0
    for piece in _pieces(value, 0, limit):
        pieces.append(piece)
        used += len(piece)
        if used > limit:
            break
    text = "".join(pieces)
    return text if len(text) <= limit else text[:max(limit - 3, 0)] + "..."


def _pieces(value: Any, depth: int, limit: int) -> Iterator[str]:
    if isinstance(value, bool) or value is None or isinstance(value, (float, datetime.date)):
        yield repr(value)
    elif isinstance(value, int):
        bits = value.bit_length()
        yield repr(value) if bits <= 256 else f"<an integer of about {int(bits * 0.30103) + 1} digits>"
    elif isinstance(value, (str, bytes)):
        yield repr(value[:limit + 1])
    elif isinstance(value, (list, tuple, set, frozenset, dict)):
        opening, closing = {list: "[]", tuple: "()", dict: "{}"}.get(type(value), "{}")
        if depth >= _DEPTH:
            yield f"{opening}...{closing}"
            return
        yield opening
        items = iter(value.items()) if isinstance(value, dict) else iter(value)
        for index, item in enumerate(items):
            if index:
                yield ", "
            if index >= _ITEMS:
                yield "..."
                break
            if isinstance(value, dict):
                yield from _pieces(item[0], depth + 1, limit)
                yield ": "
                item = item[1]
            yield from _pieces(item, depth + 1, limit)
        yield closing
    else:
        yield f"<{type(value).__name__}>"


def text_of(text: str, limit: int = 200) -> str:
    """`text` as is when it is one printable line of at most `limit` characters; else its cut `repr`."""
    if isinstance(text, str) and text.isprintable() and len(text) <= limit:
        return text
    return shown(str(text), limit)


def key_text(key: Any) -> str:
    """A mapping key as it reads in a key path (`tvm.mcpu`): plain when a short printable string."""
    return text_of(key, 60) if isinstance(key, str) else shown(key, 60)

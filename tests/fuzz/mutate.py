"""Hypothesis strategies that damage valid inputs: byte-level edits and structured edits of YAML and records."""

from __future__ import annotations

import math

from hypothesis import strategies as st

# Values that have broken parsers and validators somewhere: wrong types, extremes, paths out, huge strings.
NASTY = st.sampled_from([
    None, True, False, 0, -1, 1, 2 ** 31, 2 ** 63, 10 ** 30, 1e20, -1e-300, 1e-300, math.inf, -math.inf, math.nan,
    "", " ", "x" * 5000, "\x00", "../../etc/passwd", "/etc/passwd", "é", "${HOME}", "$(rm -rf /)", "--help",
    [], [1, "a"], {}, {"kind": "llvm"}, [[[[[]]]]],
])


@st.composite
def byte_edits(draw, data: bytes, max_edits: int = 6) -> bytes:
    """`data` with a few random edits: flip, overwrite, insert, delete, truncate, duplicate a slice."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, max_edits))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "duplicate"]))
        pos = draw(st.integers(0, max(len(out) - 1, 0)))
        if op == "flip" and out:
            out[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and out:
            out[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del out[pos:pos + draw(st.integers(1, 64))]
        elif op == "truncate":
            del out[pos:]
        elif op == "duplicate":
            out[pos:pos] = out[pos:pos + draw(st.integers(1, 256))]
    return bytes(out)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, prefix + (index,))


def _replace(value, path, new):
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = new if len(path) == 1 else _replace(copy[path[0]], path[1:], new)
    return copy


def _delete(value, path):
    if len(path) == 1:
        copy = dict(value) if isinstance(value, dict) else list(value)
        del copy[path[0]]
        return copy
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _delete(copy[path[0]], path[1:])
    return copy


@st.composite
def tree_edits(draw, value, max_edits: int = 3):
    """A JSON/YAML-like tree with a few leaves or subtrees replaced by nasty values, deleted, or keys added."""
    for _ in range(draw(st.integers(1, max_edits))):
        paths = list(_paths(value))
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "delete", "add"]))
        if op == "delete" and path:
            value = _delete(value, path)
        elif op == "add":
            containers = [p for p in paths if isinstance(_get(value, p), dict)]
            if containers:
                at = draw(st.sampled_from(containers))
                key = draw(st.sampled_from(["extends", "name", "tvm", "mcpu", "num-cores", "flags", "x", "host",
                                            "runtime", "threads", "libs", "run_us", "trace", "format"]))
                value = _replace(value, at + (key,), draw(NASTY))
        else:
            value = _replace(value, path, draw(NASTY))
    return value


def _get(value, path):
    for part in path:
        value = value[part]
    return value

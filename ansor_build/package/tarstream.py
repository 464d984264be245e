"""Reading an untrusted `.tar.gz` (an uploaded PACKAGE.tar.gz) as a stream, in bounded memory and work.

`members` inflates and parses one chunk at a time, so no member, header or stream is ever held whole, and `Limits`
caps what a hostile archive can make it do: tar entries, name length, extended-header size, uncompressed bytes and
the expansion ratio (a decompression bomb is refused early). Damage (a truncated or corrupt gzip stream, a bad tar
checksum, trailing data) is an `InputError` naming the archive, as is anything that exceeds a limit.

The parser is small, and strict where tar readers disagree, so that what is verified is what any of them extracts:
ustar, GNU and pax headers with GNU long names and pax `path` and `size` records; no sparse files; directories carry
no data; after the end-of-archive block only zeros may follow, up to the end of the gzip stream (whose CRC and
length zlib checks). Members that are neither files nor directories are passed on with kind "other" (the caller
refuses them); their data is skipped, as tar readers skip it.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from ..errors import InputError

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
BLOCK = 512
CHUNK = 1 * MiB  # decompressed bytes per read
RAW_CHUNK = 64 * KiB  # compressed bytes per read

FILE_TYPES = (b"0", b"\0", b"7")  # regular file (and the old and the "contiguous" spellings of it)
EXTENDED_TYPES = (b"L", b"K", b"x", b"g")  # GNU long name / long link name, pax extended / global header


@dataclass(frozen=True)
class Limits:
    """What reading an untrusted package may cost; an archive or package beyond any of them is refused."""

    entries: int = 10_000  # tar headers in an archive, entries in a package directory
    name: int = 1024  # characters in a file name
    header: int = 64 * KiB  # bytes of one GNU long-name or pax extended header
    manifest: int = 16 * MiB  # bytes of manifest.json
    total: int = 16 * GiB  # uncompressed bytes of an archive
    ratio: int = 1000  # uncompressed : compressed bytes of an archive, enforced once past `ratio_from`
    ratio_from: int = 64 * MiB


LIMITS = Limits()


def shown(name: str) -> str:
    """A name as it may appear in a one-line message (control and other unprintable characters escaped)."""
    return name if name.isprintable() else ascii(name)[1:-1]


def size_text(n: int) -> str:
    """`16 MiB`, `1.5 GiB`, `512 bytes`."""
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


class _Inflate:
    """The decompressed bytes of a gzip file (one member or several concatenated, as gzip allows), read in chunks
    within `limits.total` and `limits.ratio`."""

    def __init__(self, raw: BinaryIO, where: str, limits: Limits):
        self.raw, self.where, self.limits = raw, where, limits
        self.inflater = None  # the decompressor of the current gzip member; None between members
        self.started = False
        self.pending = b""  # compressed bytes read but not yet decompressed
        self.compressed = 0  # compressed bytes consumed so far
        self.size = 0  # decompressed bytes produced so far

    def error(self, what: str) -> InputError:
        return InputError(f"{self.where}: not a readable .tar.gz package archive ({what})")

    def read(self, n: int) -> bytes:
        """Up to `n` decompressed bytes; b"" only at the end of the file."""
        while True:
            if self.inflater is None and not self._next_member():
                return b""
            if not self.pending and not self._fill(1):
                raise self.error("truncated: the gzip stream ends early")
            consumed = self.pending
            try:
                data = self.inflater.decompress(consumed, n)
            except zlib.error as err:
                raise self.error(f"corrupt gzip data: {err}") from None
            if self.inflater.eof:
                self.pending, self.inflater = self.inflater.unused_data, None
            else:
                self.pending = self.inflater.unconsumed_tail
            self.compressed += len(consumed) - len(self.pending)
            if data:
                self._count(len(data))
                return data

    def _fill(self, n: int) -> bool:
        """Read until `pending` holds `n` bytes; False if the file ends first."""
        while len(self.pending) < n:
            data = self.raw.read(RAW_CHUNK)
            if not data:
                return False
            self.pending += data
        return True

    def _next_member(self) -> bool:
        """Start the next gzip member; False at the end of the file (zero padding after a member is allowed)."""
        if self.started:
            while self._fill(1):
                rest = self.pending.lstrip(b"\0")
                self.compressed += len(self.pending) - len(rest)
                self.pending = rest
                if rest:
                    break
            else:
                return False
        if not self._fill(2) or self.pending[:2] != b"\x1f\x8b":
            raise self.error("data after the end of the gzip stream" if self.started else "not gzip data")
        self.started = True
        self.inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return True

    def _count(self, n: int) -> None:
        self.size += n
        limits = self.limits
        if self.size > limits.total:
            raise InputError(f"{self.where}: refused: more than {size_text(limits.total)} uncompressed")
        if self.size > limits.ratio_from and self.size > limits.ratio * self.compressed:
            raise InputError(f"{self.where}: refused: {size_text(self.compressed)} expand to over "
                             f"{size_text(self.size)}, more than {limits.ratio}:1 (a decompression bomb?)")


class _Tar:
    """The uncompressed tar stream: exact reads and skips of a decompressed `_Inflate`, buffered a chunk at a time."""

    def __init__(self, stream: _Inflate):
        self.stream = stream
        self.buffer, self.pos = b"", 0
        self.offset = 0  # bytes of the tar stream consumed

    def read(self, n: int) -> bytes:
        """Up to `n` bytes (b"" only at the end)."""
        if self.pos == len(self.buffer):
            self.buffer, self.pos = self.stream.read(CHUNK), 0
        data = self.buffer[self.pos:self.pos + n]
        self.pos += len(data)
        self.offset += len(data)
        return data

    def exact(self, n: int, what: str) -> bytes:
        parts, got = [], 0
        while got < n:
            data = self.read(n - got)
            if not data:
                raise self.stream.error(f"truncated: the tar stream ends inside {what}")
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    def skip(self, n: int, what: str) -> None:
        while n > 0:
            data = self.read(min(n, CHUNK))
            if not data:
                raise self.stream.error(f"truncated: the tar stream ends inside {what}")
            n -= len(data)


class Member:
    """One entry of the archive: `name` as stored (unchecked), `kind` "file", "dir" or "other", `size` of its data.

    `read` returns the data of a file a chunk at a time; it is valid only until the next member is requested."""

    def __init__(self, tar: _Tar, name: str, kind: str, size: int):
        self.name, self.kind, self.size = name, kind, size
        self._tar, self._left = tar, size if kind == "file" else 0

    def read(self, n: int = CHUNK) -> bytes:
        """Up to `n` more bytes of the member's data; b"" at its end."""
        if not self._left:
            return b""
        data = self._tar.read(min(n, self._left, CHUNK))
        if not data:
            raise self._tar.stream.error(f"truncated: the tar stream ends inside '{shown(self.name)}'")
        self._left -= len(data)
        return data


def members(raw: BinaryIO, where: str, limits: Limits = LIMITS) -> Iterator[Member]:
    """The members of the .tar.gz read from `raw`, one at a time; `where` names the archive in errors."""
    tar = _Tar(_Inflate(raw, where, limits))
    entries = 0
    extended: dict[str, str] = {}  # pax records and GNU long names for the next header
    while True:
        offset = tar.offset
        block = tar.exact(BLOCK, "a header")
        if not any(block):
            _expect_zeros(tar)
            return
        entries += 1
        if entries > limits.entries:
            raise InputError(f"{where}: refused: more than {limits.entries} tar entries")
        name, typeflag, size = _header(block, offset, tar.stream)
        if typeflag in EXTENDED_TYPES:
            if size > limits.header:
                raise InputError(f"{where}: refused: a {size_text(size)} extended tar header at byte {offset} "
                                 f"(at most {size_text(limits.header)})")
            data = tar.exact(size, "an extended header")
            tar.skip(-size % BLOCK, "an extended header")
            if typeflag == b"L":
                extended["path"] = _text(data.split(b"\0", 1)[0])
            elif typeflag in (b"x", b"g"):
                records = _pax(data, offset, tar.stream)
                if typeflag == b"x":
                    extended.update(records)
                elif {"path", "size"} & set(records) or any(k.startswith("GNU.sparse") for k in records):
                    raise tar.stream.error(f"global pax header at byte {offset} sets a member's path, size or "
                                           f"sparse map")
            continue
        if any(key.startswith("GNU.sparse") for key in extended):
            raise InputError(f"{where}: refused: sparse member at byte {offset}")
        name = extended.get("path", name)
        if "size" in extended:
            size = _pax_size(extended["size"], offset, tar.stream)
        extended.clear()
        if len(name) > limits.name:
            raise InputError(f"{where}: refused: a member name of {len(name)} characters at byte {offset} "
                             f"(at most {limits.name})")
        kind = "file" if typeflag in FILE_TYPES else "dir" if typeflag == b"5" else "other"
        if kind == "file" and typeflag == b"\0" and name.endswith("/"):
            kind = "dir"  # the old tar spelling of a directory
        if kind == "dir" and size:
            raise tar.stream.error(f"directory member '{shown(name)}' carries {size} bytes of data")
        member = Member(tar, name, kind, size)
        yield member
        left = member._left if kind == "file" else size  # tar readers skip the data of unknown types as of files
        tar.skip(left + (-size % BLOCK), f"'{shown(name)}'")


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _number(field: bytes) -> int:
    """A numeric header field: octal digits, or base-256 (GNU) when the first byte is 0x80; ValueError otherwise."""
    if field[0] == 0x80:
        return int.from_bytes(field[1:], "big")
    digits = field.split(b"\0", 1)[0].strip()
    if not re.fullmatch(rb"[0-7]*", digits):
        raise ValueError(digits)
    return int(digits or b"0", 8)


def _header(block: bytes, offset: int, stream: _Inflate) -> tuple[str, bytes, int]:
    """(name, type flag, size) of a tar header block."""
    try:
        checksum, size = _number(block[148:156]), _number(block[124:136])
    except ValueError:
        raise stream.error(f"damaged tar header at byte {offset}") from None
    if checksum not in (256 + sum(struct.unpack_from("148B8x356B", block)),
                        256 + sum(struct.unpack_from("148b8x356b", block))):
        raise stream.error(f"damaged tar header at byte {offset} (bad checksum)")
    typeflag = block[156:157]
    name = block[:100].split(b"\0", 1)[0]
    prefix = block[345:500]
    if block[257:263] == b"ustar\0":  # POSIX: the name may be split into prefix and name
        prefix = prefix.split(b"\0", 1)[0]
        if prefix and typeflag not in (b"L", b"K", b"S"):
            name = prefix + b"/" + name
    elif any(prefix) and typeflag != b"S":
        # GNU tar reads these bytes as times, Python's tarfile as a name prefix: readers would disagree on the name
        raise stream.error(f"tar header at byte {offset} has data in its prefix field")
    return _text(name), typeflag, size


def _pax(data: bytes, offset: int, stream: _Inflate) -> dict[str, str]:
    """The records (`LENGTH KEY=VALUE\\n`) of a pax extended header."""
    records, pos = {}, 0
    while pos < len(data):
        match = re.match(rb"([1-9][0-9]{0,8}) ", data[pos:pos + 11])
        end = pos + int(match.group(1)) if match else 0
        record = data[pos + len(match.group(0)):end] if match else b""
        if not match or end > len(data) or not record.endswith(b"\n") or b"=" not in record:
            raise stream.error(f"damaged pax header at byte {offset}")
        key, value = record[:-1].split(b"=", 1)
        records[key.decode("utf-8", "replace")] = _text(value)
        pos = end
    return records


def _pax_size(value: str, offset: int, stream: _Inflate) -> int:
    if not re.fullmatch(r"[0-9]{1,20}", value):
        raise stream.error(f"damaged pax header at byte {offset} (size {value[:30]!r})")
    return int(value)


def _expect_zeros(tar: _Tar) -> None:
    """After the end-of-archive block: only zeros, up to the end of the stream (which also checks the gzip CRC)."""
    while True:
        offset = tar.offset
        data = tar.read(CHUNK)
        if not data:
            return
        rest = data.lstrip(b"\0")
        if rest:
            raise tar.stream.error(f"data after the end of the tar archive, at byte {offset + len(data) - len(rest)}")

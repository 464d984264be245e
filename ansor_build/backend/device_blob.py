"""TVM's packed-imports blob (what `export_library` embeds in model.so) and swapping CUDA source for device code.

TVM 0.27 builds a CUDA module that holds CUDA C *source* (format "cuda") whenever its CUDA runtime is not loaded in
the building process (always so on a build host without a GPU driver), and the deployed model then compiles that
source when it loads, with NVRTC or nvcc on the device. This module rewrites the serialized module so it holds
compiled device code instead (format "fatbin"), which the CUDA runtime loads with `cuModuleLoadData`.

Blob layout (TVM `PackImportsToBytes`; every integer little-endian uint64, every string/bytes a uint64 length
followed by the bytes):

    nbytes | import-tree row pointers (count, values) | child indices (count, values)
    | per module group: kind string, then (unless kind is "_lib", the host code) the module's bytes

A "cuda" module's bytes (`CUDAModuleNode::SaveToBytes`): format string | function table | code bytes.
The function table is kept verbatim; it is found as what lies between the format and the code.

Pure Python: nothing here imports TVM (the unit tests build blobs by hand).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import AnsorError

CUDA_KIND = b"cuda"
SOURCE_FORMAT = b"cuda"
HOST_PLACEHOLDER = b"_lib"


class BlobFormatError(AnsorError):
    """The blob is not laid out as TVM 0.27 lays it out (a TVM upgrade changed the format)."""


def pack_string(data: bytes) -> bytes:
    return struct.pack("<Q", len(data)) + data


def pack_vector(values: list[int]) -> bytes:
    return struct.pack("<Q", len(values)) + struct.pack(f"<{len(values)}Q", *values)


class _Reader:
    def __init__(self, data: bytes, offset: int = 0):
        self.data, self.offset = data, offset

    def u64(self) -> int:
        if self.offset + 8 > len(self.data):
            raise BlobFormatError(f"packed module blob ends early at byte {self.offset}")
        (value,) = struct.unpack_from("<Q", self.data, self.offset)
        self.offset += 8
        return value

    def string(self) -> bytes:
        size = self.u64()
        if self.offset + size > len(self.data):
            raise BlobFormatError(f"packed module blob: a field of {size} bytes at byte {self.offset} runs past "
                                  f"its end")
        value = self.data[self.offset:self.offset + size]
        self.offset += size
        return value

    def vector(self) -> list[int]:
        count = self.u64()
        return [self.u64() for _ in range(count)]


@dataclass
class Blob:
    """A parsed blob: the import tree and, per module group, its kind and bytes (None for the host code)."""

    row_ptr: list[int]
    child_indices: list[int]
    modules: list[tuple[bytes, bytes | None]]

    @classmethod
    def parse(cls, data: bytes) -> "Blob":
        reader = _Reader(data)
        nbytes = reader.u64()
        if nbytes != len(data) - 8:
            raise BlobFormatError(f"packed module blob: header says {nbytes} bytes, found {len(data) - 8}")
        row_ptr, child_indices = reader.vector(), reader.vector()
        modules = []
        for _ in range(max(len(row_ptr) - 1, 0)):
            kind = reader.string()
            modules.append((kind, None if kind == HOST_PLACEHOLDER else reader.string()))
        if reader.offset != len(data):
            raise BlobFormatError(f"packed module blob: {len(data) - reader.offset} unread bytes at its end")
        return cls(row_ptr, child_indices, modules)

    def pack(self) -> bytes:
        body = pack_vector(self.row_ptr) + pack_vector(self.child_indices)
        for kind, payload in self.modules:
            body += pack_string(kind) + (b"" if payload is None else pack_string(payload))
        return struct.pack("<Q", len(body)) + body


def cuda_payload_parts(payload: bytes, sources: list[bytes]) -> tuple[bytes, bytes, bytes]:
    """(format, function table, code) of a CUDA module's bytes; `sources` are the candidate codes (its source)."""
    reader = _Reader(payload)
    fmt = reader.string()
    rest = payload[reader.offset:]
    for source in sources:
        tail = pack_string(source)
        if rest.endswith(tail):
            return fmt, rest[:len(rest) - len(tail)], source
    raise BlobFormatError(f"a CUDA module of format '{fmt.decode(errors='replace')}' holds none of the "
                          f"{len(sources)} CUDA sources of the build")


def replace_cuda_sources(data: bytes, compiled: dict[bytes, bytes], fmt: bytes = b"fatbin") -> tuple[bytes, int]:
    """Swap every CUDA module's source (a key of `compiled`) for its device code; return the blob and the count.

    Raises BlobFormatError when a CUDA module holds anything but one of those sources.
    """
    blob = Blob.parse(data)
    replaced = 0
    for index, (kind, payload) in enumerate(blob.modules):
        if kind != CUDA_KIND:
            continue
        module_fmt, table, source = cuda_payload_parts(payload, list(compiled))
        if module_fmt != SOURCE_FORMAT:
            raise BlobFormatError(f"a CUDA module already holds format '{module_fmt.decode(errors='replace')}', "
                                  f"expected CUDA source ('cuda')")
        blob.modules[index] = (kind, pack_string(fmt) + table + pack_string(compiled[source]))
        replaced += 1
    return blob.pack(), replaced

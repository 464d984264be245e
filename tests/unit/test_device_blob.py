"""The packed-imports blob: parsing, repacking, and swapping CUDA source for device code (blobs built by hand)."""

from __future__ import annotations

import struct

import pytest

from ansor_build.backend.device_blob import Blob, BlobFormatError, pack_string, pack_vector, replace_cuda_sources

SOURCE = b'extern "C" __global__ void add_kernel(float* a) { a[threadIdx.x] += 1.0f; }'
TABLE = pack_vector([1]) + pack_string(b"add_kernel") + b"\x01\x02\x03\x04"  # opaque to the rewriter


def blob(*modules) -> bytes:
    """A blob whose modules form a chain (module i imports module i + 1), like executable -> host code -> cuda."""
    count = len(modules)
    body = pack_vector([*range(count), count - 1]) + pack_vector(list(range(1, count)))
    for kind, payload in modules:
        body += pack_string(kind) + (b"" if payload is None else pack_string(payload))
    return struct.pack("<Q", len(body)) + body


def cuda(fmt: bytes, code: bytes) -> tuple[bytes, bytes]:
    return b"cuda", pack_string(fmt) + TABLE + pack_string(code)


def test_parse_and_pack_round_trip():
    data = blob((b"relax.VMExecutable", b"exec-bytes"), (b"_lib", None), cuda(b"cuda", SOURCE))
    parsed = Blob.parse(data)
    assert [kind for kind, _ in parsed.modules] == [b"relax.VMExecutable", b"_lib", b"cuda"]
    assert parsed.modules[1][1] is None
    assert parsed.pack() == data


def test_cuda_source_is_replaced_by_device_code_and_the_rest_is_kept():
    data = blob((b"relax.VMExecutable", b"exec-bytes"), (b"_lib", None), cuda(b"cuda", SOURCE))
    fatbin = b"\x50\xed\x55\xba" + bytes(60)
    out, replaced = replace_cuda_sources(data, {SOURCE: fatbin})
    assert replaced == 1
    parsed = Blob.parse(out)
    assert parsed.modules[0] == (b"relax.VMExecutable", b"exec-bytes")
    assert parsed.modules[2] == cuda(b"fatbin", fatbin)
    assert struct.unpack_from("<Q", out)[0] == len(out) - 8


def test_blob_without_cuda_is_unchanged():
    data = blob((b"relax.VMExecutable", b"exec-bytes"), (b"_lib", None))
    assert replace_cuda_sources(data, {SOURCE: b"x"}) == (data, 0)


@pytest.mark.parametrize("data, message", [
    (blob(cuda(b"cuda", b"some other source")), "holds none of the 1 CUDA sources"),
    (blob(cuda(b"cubin", SOURCE)), "already holds format 'cubin'"),
    (blob((b"relax.VMExecutable", b"x"))[:-3], "header says"),
    (blob((b"relax.VMExecutable", b"x")) + b"\0", "header says"),
])
def test_unexpected_layouts_are_errors(data, message):
    with pytest.raises(BlobFormatError, match=message):
        replace_cuda_sources(data, {SOURCE: b"x"})

"""Hostile packages for `verify` and `archive`: decompression bombs, damaged and crafted archives, crafted manifests,
symlinks. Each ends in a report or one error line, in bounded memory, and nothing outside the package is read or
written (no TVM: the packages are stand-ins with real manifests, the archives are made by hand)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
import resource
import struct
import subprocess
import sys
import tarfile
import time
import zlib

import pytest

from ansor_build.errors import InputError
from ansor_build.package import archive as archive_module
from ansor_build.package import verify as verify_module
from ansor_build.package.archive import write_archive
from ansor_build.package.layout import FORMAT_VERSION
from ansor_build.package.manifest import write_manifest
from ansor_build.package.tarstream import Limits
from ansor_build.package.verify import verify
from helpers import one_line_error, run_cli

MiB = 1 << 20
HEADROOM = 256 * MiB  # address space a bounded `ansor-build verify` may use beyond what its imports take
FILES = {"model.so": b"\x7fELF model\n" * 100, "loader.py": b"print('loader')\n", "runtime/libtvm.so": b"lib\n" * 50}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_bytes(files: dict[str, bytes]) -> bytes:
    return json.dumps({"format": FORMAT_VERSION,
                       "files": {name: {"sha256": sha256(data), "size": len(data)} for name, data in files.items()}},
                      indent=2).encode()


def make_package(path, files=FILES):
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    write_manifest(path, {}, list(files))
    return path


class TarGz:
    """A .tar.gz made by hand, a header at a time. Zeros cost nothing to write: after a full flush a block of zeros
    compresses to the same bytes every time, so it is compressed once and repeated (1.5 GB in about a second).
    `flush` sets that block (and so the ratio: 1 MiB is about 1000:1, 16 KiB about 440:1)."""

    def __init__(self, path, flush=MiB):
        self.path, self.flush = path, flush
        self.file = open(path, "wb")
        self.deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
        self.crc = self.size = 0  # of the tar stream so far
        self.file.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff")  # gzip header, mtime 0

    def raw(self, data: bytes) -> bytes:
        """Append `data` to the tar stream; returns its compressed bytes."""
        compressed = self.deflate.compress(data) + self.deflate.flush(zlib.Z_FULL_FLUSH)
        self.file.write(compressed)
        self.crc, self.size = zlib.crc32(data, self.crc), self.size + len(data)
        return compressed

    def zeros(self, n: int):
        block, previous, repeat = bytes(self.flush), None, None
        while n >= self.flush:
            if repeat is None:
                compressed = self.raw(block)
                repeat, previous = (compressed if compressed == previous else None), compressed
            else:  # the same block compresses to the same bytes: write them without compressing
                self.file.write(repeat)
                self.crc, self.size = zlib.crc32(block, self.crc), self.size + self.flush
            n -= self.flush
        if n:
            self.raw(bytes(n))

    def header(self, name, size=0, type=tarfile.REGTYPE, format=tarfile.GNU_FORMAT):
        info = tarfile.TarInfo(name)
        info.size, info.type = size, type
        self.raw(info.tobuf(format))

    def member(self, name, data: bytes | None = None, zeros: int = 0, type=tarfile.REGTYPE):
        size = len(data) if data is not None else zeros
        self.header(name, size, type)
        self.raw(data) if data is not None else self.zeros(size)
        self.raw(bytes(-size % 512))

    def package(self, files=FILES, top="pkg"):
        """A good package: its directory, manifest and files."""
        self.header(top, type=tarfile.DIRTYPE)
        self.member(f"{top}/manifest.json", manifest_bytes(files))
        for name, data in files.items():
            self.member(f"{top}/{name}", data)
        return self

    def close(self, end=True):
        if end:
            self.raw(bytes(1024))
        self.file.write(self.deflate.flush() + struct.pack("<II", self.crc, self.size & 0xFFFFFFFF))
        self.file.close()
        return self.path


@functools.lru_cache(maxsize=1)
def _baseline_address_space() -> int:
    """Bytes of address space a Python with ansor-build's verify imported peaks at (VmPeak)."""
    out = subprocess.run([sys.executable, "-c", "import ansor_build.cli, ansor_build.package.verify, re; "
                          "print(re.search(r'VmPeak:\\s*(\\d+) kB', open('/proc/self/status').read())[1])"],
                         capture_output=True, text=True, check=True).stdout
    return int(out) * 1024


def run_bounded(*args) -> tuple[subprocess.CompletedProcess, float]:
    """`ansor-build ARGS` in a fresh process whose address space is capped at HEADROOM above its imports' (reading a
    big member whole dies of MemoryError); with the seconds it took."""
    limit = _baseline_address_space() + HEADROOM
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "ansor_build", *map(str, args)], capture_output=True, text=True,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)), timeout=300)
    return proc, time.monotonic() - start


def only_line(proc) -> str:
    """The one error line, and nothing else on stderr (no second line smuggled in by a name with a newline)."""
    line = one_line_error(proc)
    assert proc.stderr.strip() == line, proc.stderr
    return line


# --- archives: memory and work are bounded -----------------------------------------------------------------------

def test_gzip_bomb_member_was_read_whole_now_refused_in_bounded_memory(tmp_path):
    """Was: a 1.5 MB .tar.gz with a 1.5 GB zero member took 1.5 GB of memory (and 16 s) to report `modified`."""
    bomb = TarGz(tmp_path / "bomb.tar.gz")
    bomb.member("pkg/manifest.json", manifest_bytes({"model.so": b"x"}))
    bomb.member("pkg/model.so", zeros=1_500_000_000)
    bomb.close()
    assert bomb.path.stat().st_size < 2 * MiB
    proc, seconds = run_bounded("verify", bomb.path)
    line = only_line(proc)
    assert line.startswith(f"ansor-build: error: {bomb.path}: refused: ") and "more than 1000:1" in line, line
    assert seconds < 20, seconds


def test_oversized_member_was_read_whole_now_reported_modified_unread(tmp_path):
    """Was: a member far larger than its manifest lists was read whole before its size was compared."""
    big = TarGz(tmp_path / "big.tar.gz", flush=16 * 1024)  # about 440:1: under the bomb ratio, so it is read through
    big.member("pkg/manifest.json", manifest_bytes(FILES))
    big.member("pkg/model.so", zeros=400 * MiB)
    for name in ("loader.py", "runtime/libtvm.so"):
        big.member(f"pkg/{name}", FILES[name])
    big.close()
    proc, seconds = run_bounded("verify", big.path)
    assert only_line(proc) == f"ansor-build: error: {big.path}: does not match manifest.json: modified: model.so"
    assert seconds < 30, seconds


def test_oversized_member_is_never_hashed(tmp_path, monkeypatch):
    hashed = []
    real = verify_module.sha256_of
    monkeypatch.setattr(verify_module, "sha256_of", lambda read, limit: hashed.append(limit) or real(read, limit))
    path = TarGz(tmp_path / "big.tar.gz").package(dict(FILES, **{"model.so": FILES["model.so"]})).close()
    assert verify(path).ok and sorted(hashed) == sorted(len(data) + 1 for data in FILES.values())
    hashed.clear()
    big = TarGz(tmp_path / "bigger.tar.gz")
    big.member("pkg/manifest.json", manifest_bytes(FILES))
    big.member("pkg/model.so", zeros=8 * MiB)
    big.member("pkg/extra.so", zeros=8 * MiB)
    big.close()
    result = verify(big.path)
    assert (result.modified, result.missing, result.extra) == (["model.so"], ["loader.py", "runtime/libtvm.so"],
                                                              ["extra.so"])
    assert hashed == []  # neither the oversized nor the unlisted member was read into a hash


def test_gnu_long_name_bomb_was_read_whole_now_refused(tmp_path):
    """Was: tarfile reads a GNU long-name header's data whole (a 1.5 GB name from a 1.5 MB file)."""
    bomb = TarGz(tmp_path / "name.tar.gz")
    bomb.member("././@LongLink", zeros=1_500_000_000, type=tarfile.GNUTYPE_LONGNAME)
    bomb.member("pkg/x", b"x")
    bomb.close()
    proc, seconds = run_bounded("verify", bomb.path)
    assert "refused: a 1.4 GiB extended tar header at byte 0 (at most 64 KiB)" in only_line(proc)
    assert seconds < 10, seconds


def test_member_count_bomb_was_listed_whole_now_refused(tmp_path):
    """Was: every member was kept (and listed as extra, on one line of megabytes)."""
    bomb = TarGz(tmp_path / "many.tar.gz").package()
    for i in range(10_001):
        bomb.header(f"pkg/f{i}")
    bomb.close()
    line = only_line(run_cli("verify", bomb.path))
    assert line == f"ansor-build: error: {bomb.path}: refused: more than 10000 tar entries"


def test_uncompressed_total_and_name_length_are_capped(tmp_path):
    path = TarGz(tmp_path / "p.tar.gz").package().close()
    with pytest.raises(InputError, match=r"p.tar.gz: refused: more than 1 KiB uncompressed$"):
        verify(path, Limits(total=1024))
    long = TarGz(tmp_path / "long.tar.gz").package()
    long.member("pkg/" + "n" * 2000, b"x")
    long.close()
    with pytest.raises(InputError, match=r"refused: a member name of 2004 characters at byte \d+ \(at most 1024\)"):
        verify(long.path)


def test_manifest_over_16_mib_is_refused_unread(tmp_path):
    big = TarGz(tmp_path / "m.tar.gz")
    big.member("pkg/manifest.json", zeros=17 * MiB)
    big.close()
    line = only_line(run_cli("verify", big.path))
    assert line == f"ansor-build: error: {big.path}: pkg/manifest.json: refused: larger than 16 MiB"


# --- archives: damage is one line, never a traceback, never a pass -----------------------------------------------

def good_archive(tmp_path):
    package = make_package(tmp_path / "pkg")
    return write_archive(package, tmp_path / "good.tar.gz")


@pytest.mark.parametrize("keep", [lambda n: n - 1, lambda n: n - 4, lambda n: n - 8, lambda n: n - 100,
                                  lambda n: n // 2, lambda n: 20], ids=["-1", "-4", "-8", "-100", "half", "20"])
def test_truncated_gzip_was_accepted_now_one_line(tmp_path, keep):
    """Was: the tar end was found before the gzip trailer, so an archive cut in its CRC and length verified `ok`."""
    data = good_archive(tmp_path).read_bytes()
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(data[:keep(len(data))])
    line = only_line(run_cli("verify", truncated))
    assert line.startswith(f"ansor-build: error: {truncated}: not a readable .tar.gz package archive (truncated"), \
        line


def test_corrupt_gzip_crc_was_accepted_now_one_line(tmp_path):
    data = bytearray(good_archive(tmp_path).read_bytes())
    data[-8] ^= 0xFF  # the CRC-32 of the trailer
    bad = tmp_path / "crc.tar.gz"
    bad.write_bytes(bytes(data))
    assert "not a readable .tar.gz package archive (corrupt gzip data: Error -3 while decompressing data: " \
           "incorrect data check)" in only_line(run_cli("verify", bad))


def test_corrupt_deflate_data_and_garbage_are_one_line(tmp_path):
    data = good_archive(tmp_path).read_bytes()
    cases = {"flipped.tar.gz": data[:40] + bytes([data[40] ^ 0x55]) + data[41:],
             "trailing.tar.gz": data + b"garbage",
             "empty.tar.gz": b"",
             "zeros.tar.gz": bytes(4096),
             "plain.tar": gzip.decompress(data)}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        line = only_line(run_cli("verify", tmp_path / name))
        assert f"{tmp_path / name}: not a readable .tar.gz package archive (" in line, (name, line)
    (tmp_path / "padded.tar.gz").write_bytes(data + bytes(100))  # zero padding after a gzip stream is allowed
    assert verify(tmp_path / "padded.tar.gz").ok
    (tmp_path / "twice.tar.gz").write_bytes(gzip.compress(gzip.decompress(data)[:10240]) +
                                            gzip.compress(gzip.decompress(data)[10240:]))
    assert verify(tmp_path / "twice.tar.gz").ok  # several gzip members, as gzip and tar read them


def test_member_hidden_after_a_damaged_header_was_ignored_now_refused(tmp_path):
    """Was: tarfile ends the archive at a bad header, while GNU tar skips it and extracts what follows; so verify
    said `ok` to an archive that extracts a file no manifest lists."""
    smuggle = TarGz(tmp_path / "smuggle.tar.gz").package()
    offset = smuggle.size
    smuggle.raw(b"\x01" * 512)
    smuggle.member("pkg/bin/backdoor", b"#!/bin/sh\n")
    smuggle.close()
    line = only_line(run_cli("verify", smuggle.path))
    assert line.endswith(f"not a readable .tar.gz package archive (damaged tar header at byte {offset})")


def test_data_after_the_end_of_archive_is_refused(tmp_path):
    after = TarGz(tmp_path / "after.tar.gz").package()
    offset = after.size + 1024
    after.raw(bytes(1024))
    after.member("pkg/bin/backdoor", b"#!/bin/sh\n")  # what `tar --ignore-zeros` would extract
    after.close()
    assert f"(data after the end of the tar archive, at byte {offset})" in only_line(run_cli("verify", after.path))


@pytest.mark.parametrize("what, build, message", [
    ("symlink", lambda t: t.member("pkg/evil", b"", type=tarfile.SYMTYPE),
     "member 'pkg/evil' is not a plain file or directory inside 'pkg/'"),
    ("device", lambda t: t.member("pkg/dev", b"", type=tarfile.CHRTYPE),
     "member 'pkg/dev' is not a plain file or directory inside 'pkg/'"),
    ("absolute", lambda t: t.member("/etc/passwd", b"x"),
     "member '/etc/passwd' is not a plain file or directory inside 'pkg/'"),
    ("dotdot", lambda t: t.member("pkg/../../etc/evil", b"x"),
     "member 'pkg/../../etc/evil' is not a plain file or directory inside 'pkg/'"),
    ("newline", lambda t: t.member("pkg/a\nb", b"x"),
     "member 'pkg/a\\nb' is not a plain file or directory inside 'pkg/'"),
    ("newline dir", lambda t: t.member("pkg/a\nb", b"data", type=tarfile.DIRTYPE),
     "(directory member 'pkg/a\\nb/' carries 4 bytes of data)"),
    ("duplicate", lambda t: t.member("pkg/model.so", FILES["model.so"]), "member 'pkg/model.so' appears twice"),
    ("second top", lambda t: t.member("other/x", b"x"), "expected one top directory, found 2: other, pkg"),
    ("dir data", lambda t: t.member("pkg/d", b"data", type=tarfile.DIRTYPE),
     "not a readable .tar.gz package archive (directory member 'pkg/d/' carries 4 bytes of data)"),
    ("sparse", lambda t: (t.raw(pax_header({"GNU.sparse.map": "0,1"})), t.member("pkg/s", b"x")),
     "refused: sparse member at byte {after_pax}"),
    ("bad pax", lambda t: (t.raw(pax_header({"path": "x"}, damage=True)), t.member("pkg/s", b"x")),
     "damaged pax header at byte {offset})"),
])
def test_archive_refusals_are_one_line(tmp_path, what, build, message):
    crafted = TarGz(tmp_path / f"{what.replace(' ', '_')}.tar.gz").package()
    offset = crafted.size
    build(crafted)
    crafted.close()
    line = only_line(run_cli("verify", crafted.path))
    assert line.startswith(f"ansor-build: error: {crafted.path}: ") and \
        line.endswith(message.format(offset=offset, after_pax=offset + 1024)), line


def pax_header(records: dict[str, str], damage=False) -> bytes:
    body = b"".join(f"{len(k) + len(v) + 3 + len(str(len(k) + len(v) + 3))} {k}={v}\n".encode()
                    for k, v in records.items())
    if damage:
        body = b"99" + body
    info = tarfile.TarInfo("pax")
    info.type, info.size = tarfile.XHDTYPE, len(body)
    return info.tobuf(tarfile.GNU_FORMAT) + body + bytes(-len(body) % 512)


def test_pax_path_and_ustar_archives_verify(tmp_path):
    """Archives from other tar writers (pax records, ustar prefixes) verify like ours."""
    files = {"model.so": b"m", "deep/" + "d" * 120 + "/lib.so": b"lib"}
    for format in (tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT):
        path = tmp_path / f"{format}.tar.gz"
        with tarfile.open(path, "w:gz", format=format) as tar:
            for name, data in [("manifest.json", manifest_bytes(files)), *files.items()]:
                info = tarfile.TarInfo(f"pkg/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        assert verify(path).ok, format


def test_manifest_json_bombs_are_one_line(tmp_path):
    """Was: a manifest nested 100000 deep (RecursionError) or with a 5000-digit number (ValueError) was a traceback."""
    cases = {"nested": b"[" * 100_000, "digits": b'{"format": 1' + b"1" * 5000 + b"}",
             "bad size": b'{"format": 1, "files": {"a": {"sha256": "' + b"0" * 64 + b'", "size": -1}}}',
             "many": json.dumps({"format": 1, "files": {f"f{i}": {"sha256": "0" * 64, "size": 0}
                                                        for i in range(10_001)}}).encode(),
             "dot": json.dumps({"format": 1, "files": {".": {"sha256": "0" * 64, "size": 0}}}).encode()}
    for name, manifest in cases.items():
        path = TarGz(tmp_path / f"{name}.tar.gz")
        path.member("pkg/manifest.json", manifest)
        path.close()
        line = only_line(run_cli("verify", path.path))
        assert f"{path.path}: pkg/manifest.json: " in line and len(line) < 400, (name, line)


# --- package directories -------------------------------------------------------------------------------------------

def test_huge_extra_and_oversized_files_were_read_whole_now_unread(tmp_path):
    """Was: every file of a package directory was read whole (a 1.5 GB sparse extra file cost 1.5 GB)."""
    package = make_package(tmp_path / "pkg")
    (package / "huge.bin").touch()
    os.truncate(package / "huge.bin", 1_500_000_000)  # sparse: costs no disk
    proc, _ = run_bounded("verify", package)
    assert only_line(proc) == f"ansor-build: error: {package}: does not match manifest.json: extra: huge.bin"
    (package / "huge.bin").unlink()
    os.truncate(package / "model.so", 1_500_000_000)
    proc, seconds = run_bounded("verify", package)
    assert only_line(proc) == f"ansor-build: error: {package}: does not match manifest.json: modified: model.so"
    assert seconds < 10, seconds


def test_manifest_symlink_out_of_the_package_was_followed_now_refused(tmp_path):
    """Was: manifest.json was read through a symlink, so a package could vouch for itself with a manifest outside."""
    package = make_package(tmp_path / "pkg")
    (package / "manifest.json").rename(tmp_path / "elsewhere.json")
    (package / "manifest.json").symlink_to(tmp_path / "elsewhere.json")
    line = only_line(run_cli("verify", package))
    assert line == f"ansor-build: error: {package / 'manifest.json'}: is a symlink or below one (refused)"
    assert "is a symlink" in only_line(run_cli("archive", package))


def test_symlinks_and_special_files_in_a_directory_are_never_followed(tmp_path):
    package = make_package(tmp_path / "pkg")
    outside = tmp_path / "outside"
    outside.mkdir()
    for name, data in FILES.items():  # the outside copies would match the manifest if followed
        (outside / name).parent.mkdir(parents=True, exist_ok=True)
        (outside / name).write_bytes(data)
    (package / "model.so").unlink()
    (package / "model.so").symlink_to(outside / "model.so")
    for path in (package / "runtime").iterdir():
        path.unlink()
    (package / "runtime").rmdir()
    (package / "runtime").symlink_to(outside / "runtime")
    os.mkfifo(package / "loader.py.fifo")
    (package / "loader.py").unlink()
    os.rename(package / "loader.py.fifo", package / "loader.py")  # a FIFO where a file is listed: never opened
    (package / "a\nb").write_bytes(b"x")
    line = only_line(run_cli("verify", package))
    assert line == (f"ansor-build: error: {package}: does not match manifest.json: modified: loader.py, model.so; "
                    f"missing: runtime/libtvm.so; extra: a\\nb, runtime")


def test_directory_entry_count_is_capped(tmp_path):
    package = make_package(tmp_path / "pkg")
    for i in range(10):
        (package / f"extra{i}").write_bytes(b"")
    with pytest.raises(InputError, match=r"pkg: refused: more than 8 files and directories$"):
        verify(package, Limits(entries=8))
    line = verify(package).line()
    assert line.endswith("extra: extra0, extra1, extra2, extra3, extra4, extra5, extra6, extra7, extra8, extra9")
    for i in range(10, 30):
        (package / f"extra{i}").write_bytes(b"")
    assert verify(package).line().endswith(", extra26 (and 10 more)")  # 20 names, then a count


def test_invalid_utf8_manifest_in_a_directory_was_a_traceback_now_one_line(tmp_path):
    package = make_package(tmp_path / "pkg")
    (package / "manifest.json").write_bytes(b'{"format": 1, "files": {"\xff": 1}}')
    assert only_line(run_cli("verify", package)) == \
        f"ansor-build: error: {package / 'manifest.json'}: not UTF-8 text (byte 25: invalid start byte)"


# --- archive of a hostile package directory ----------------------------------------------------------------------

def _tree(root) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("listed, message", [
    ("../../etc/passwd", "files: '../../etc/passwd' is not a file name inside the package"),
    ("/etc/passwd", "files: '/etc/passwd' is not a file name inside the package"),
    ("a/./b", "files: 'a/./b' is not a file name inside the package"),
])
def test_archive_refuses_manifests_naming_files_outside(tmp_path, listed, message):
    package = make_package(tmp_path / "pkg")
    manifest = json.loads((package / "manifest.json").read_text())
    manifest["files"][listed] = {"sha256": sha256(b"root:x:0:0"), "size": 10}
    (package / "manifest.json").write_text(json.dumps(manifest))
    before = _tree(tmp_path)
    assert only_line(run_cli("archive", package)) == f"ansor-build: error: {package / 'manifest.json'}: {message}"
    assert _tree(tmp_path) == before


def test_archive_refuses_symlinked_files_and_directories(tmp_path):
    package = make_package(tmp_path / "pkg")
    outside = tmp_path / "outside"
    (outside / "runtime").mkdir(parents=True)
    (outside / "runtime" / "libtvm.so").write_bytes(FILES["runtime/libtvm.so"])
    for path in (package / "runtime").iterdir():
        path.unlink()
    (package / "runtime").rmdir()
    (package / "runtime").symlink_to(outside / "runtime")
    before = _tree(tmp_path)
    line = only_line(run_cli("archive", package))
    assert line.endswith("cannot archive: " + f"{package}: does not match manifest.json: missing: runtime/libtvm.so; "
                         "extra: runtime")
    assert _tree(tmp_path) == before


def test_archive_never_follows_a_symlink_swapped_in_after_verify(tmp_path, monkeypatch):
    """Was: the files were read by path after verify, so a symlink swapped in between was followed out of the
    package and its target archived."""
    package = make_package(tmp_path / "pkg")
    secret = tmp_path / "secret"
    secret.write_bytes(FILES["model.so"])  # matches the manifest, so only following the link would pass
    (package / "model.so").unlink()
    (package / "model.so").symlink_to(secret)
    monkeypatch.setattr(archive_module, "verify", lambda package: verify_module.Verification(package))  # the race
    with pytest.raises(InputError, match=r"cannot archive: .*pkg/model.so: is a symlink or below one \(refused\)$"):
        write_archive(package)
    assert not (tmp_path / "pkg.tar.gz").exists() and not list(tmp_path.glob(".pkg.tar.gz.tmp-*"))


def test_archive_refuses_a_file_changed_after_verify(tmp_path, monkeypatch):
    package = make_package(tmp_path / "pkg")
    monkeypatch.setattr(archive_module, "verify", lambda package: verify_module.Verification(package))
    (package / "model.so").write_bytes(b"X" * len(FILES["model.so"]))  # same size, other bytes
    with pytest.raises(InputError, match=r"cannot archive: .*pkg/model.so changed while it was archived$"):
        write_archive(package)
    (package / "model.so").write_bytes(b"short")
    with pytest.raises(InputError, match=r"cannot archive: .*pkg/model.so changed since it was verified$"):
        write_archive(package)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]  # no archive, no temporary file left behind


def test_archive_streams_and_verifies_round_trip(tmp_path):
    package = make_package(tmp_path / "pkg")
    path = write_archive(package)
    assert path.read_bytes() == archive_module.archive_bytes(package)
    assert verify(path).line() == f"{path}: ok, 3 files match manifest.json"

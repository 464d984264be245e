"""Package archives (reproducible .tar.gz) and `ansor-build verify` (directories and archives, tampering)."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from ansor_build.package.archive import ARCHIVE_MTIME
from ansor_build.package.manifest import write_manifest
from helpers import one_line_error, run_cli

pytestmark = pytest.mark.release

FILES = ["bin/ansor_runner", "loader.py", "model.so", "runtime/libtvm_ffi.so"]


def make_package(path, mode=0o644):
    """A small package directory with a real manifest (the bytes are stand-ins; verify only hashes them)."""
    for name in FILES:
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(f"contents of {name}\n".encode() * 50)
        os.chmod(path / name, 0o755 if name in ("bin/ansor_runner", "model.so") else mode)
    write_manifest(path, {"model": {"name": "m"}}, ["manifest.json", *FILES])
    return path


def rewrite_archive(src, dst, change):
    """Copy a package archive member by member; `change(name, data)` returns new bytes, or None to drop it."""
    with tarfile.open(src, "r:gz") as tar, tarfile.open(dst, "w:gz") as out:
        for member in tar.getmembers():
            data = tar.extractfile(member).read() if member.isfile() else None
            if data is not None:
                data = change(member.name, data)
                if data is None:
                    continue
                member.size = len(data)
            out.addfile(member, io.BytesIO(data) if data is not None else None)
    return dst


def test_archives_of_equal_packages_are_byte_identical(tmp_path):
    a = make_package(tmp_path / "a" / "pkg")
    b = make_package(tmp_path / "other" / "deeper" / "pkg", mode=0o664)  # another umask, other mtimes
    os.utime(b / "loader.py", (1, 1))
    run_cli("archive", a, check=True)
    run_cli("archive", b, "-o", tmp_path / "b.tar.gz", check=True)
    data = (tmp_path / "a" / "pkg.tar.gz").read_bytes()
    assert data == (tmp_path / "b.tar.gz").read_bytes()
    assert data[3] == 0 and data[4:8] == b"\0\0\0\0"  # gzip header: no file name, mtime 0
    with tarfile.open(tmp_path / "b.tar.gz", "r:gz") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names) and names[0] == "pkg" and "pkg/manifest.json" in names
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(ARCHIVE_MTIME, 0, 0, "", "")}
    modes = {m.name: m.mode for m in members}
    assert modes["pkg/bin/ansor_runner"] == modes["pkg/bin"] == 0o755 and modes["pkg/loader.py"] == 0o644
    assert run_cli("verify", tmp_path / "b.tar.gz", check=True).stdout.strip() == \
        f"{tmp_path / 'b.tar.gz'}: ok, {len(FILES)} files match manifest.json"


def test_verify_reports_modified_missing_and_extra_files(tmp_path):
    pkg = make_package(tmp_path / "pkg")
    assert run_cli("verify", pkg, check=True).returncode == 0
    (pkg / "model.so").write_bytes((pkg / "model.so").read_bytes()[:-1] + b"X")  # same size, other bytes
    (pkg / "loader.py").unlink()
    (pkg / "runtime" / "evil.so").write_bytes(b"x")
    line = one_line_error(run_cli("verify", pkg))
    assert line == (f"ansor-build: error: {pkg}: does not match manifest.json: modified: model.so; missing: "
                    f"loader.py; extra: runtime/evil.so")
    line = one_line_error(run_cli("archive", pkg))  # a tampered package is not archived
    assert "cannot archive" in line and not (tmp_path / "pkg.tar.gz").exists()


def test_verify_detects_tampered_archives(tmp_path):
    good = tmp_path / "pkg.tar.gz"
    run_cli("archive", make_package(tmp_path / "pkg"), check=True)
    cases = {
        "modified": lambda name, data: data + b"!" if name == "pkg/model.so" else data,
        "missing": lambda name, data: None if name == "pkg/loader.py" else data,
    }
    for what, change in cases.items():
        line = one_line_error(run_cli("verify", rewrite_archive(good, tmp_path / f"{what}.tar.gz", change)))
        assert f"does not match manifest.json: {what}: " in line
    extra = tmp_path / "extra.tar.gz"
    with tarfile.open(good, "r:gz") as tar, tarfile.open(extra, "w:gz") as out:
        for member in tar.getmembers():
            out.addfile(member, tar.extractfile(member) if member.isfile() else None)
        info = tarfile.TarInfo("pkg/bin/backdoor")
        info.size = 1
        out.addfile(info, io.BytesIO(b"x"))
    assert "extra: bin/backdoor" in one_line_error(run_cli("verify", extra))

    unsafe = tmp_path / "unsafe.tar.gz"
    with tarfile.open(unsafe, "w:gz") as out:
        for name in ("pkg/manifest.json", "pkg/../../etc/evil"):
            info = tarfile.TarInfo(name)
            info.size = 2
            out.addfile(info, io.BytesIO(b"{}"))
    assert "member 'pkg/../../etc/evil' is not a plain file or directory inside 'pkg/'" in \
        one_line_error(run_cli("verify", unsafe))

    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(good.read_bytes()[:200])
    assert "not a readable .tar.gz package archive" in one_line_error(run_cli("verify", truncated))
    not_gzip = tmp_path / "plain.tar.gz"
    not_gzip.write_bytes(b"hello")
    assert "not a readable .tar.gz package archive" in one_line_error(run_cli("verify", not_gzip))
    assert f"{tmp_path / 'nope'}: not found" in one_line_error(run_cli("verify", tmp_path / "nope"))
    assert "not a package (manifest.json not found)" in one_line_error(run_cli("verify", tmp_path))
    (tmp_path / "pkg" / "manifest.json").write_text("{")
    assert "manifest.json: invalid JSON" in one_line_error(run_cli("verify", tmp_path / "pkg"))


@pytest.mark.tvm
def test_cli_build_archive_equals_the_scons_archive(built_a, tmp_path):
    """`build --records R --archive` in another directory writes the very archive SCons wrote in checkout A."""
    a, _, _ = built_a
    out = tmp_path / "cli" / "mlp"
    run_cli("build", a.root / "models/mlp.onnx", "--target", a.root / "targets/release.yaml", "-o", out,
            "--records", a.root / "build/release/mlp.records.json", "--archive", check=True)
    assert (tmp_path / "cli" / "mlp.tar.gz").read_bytes() == (a.root / "build/release/mlp.tar.gz").read_bytes()

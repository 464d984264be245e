"""Output directories: ansor-build replaces only an empty directory or a package it wrote (issue: `-o ~` emptied
the home directory). No TVM: a refused directory is refused before any work, and staging is tested directly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ansor_build.errors import InputError
from ansor_build.package.staging import check_replaceable, foreign_files, staged_directory
from helpers import HOST_TARGET, one_line_error, run_cli

MODEL = "model-is-never-read.onnx"  # the directory is refused before the model is opened


def fake_package(path: Path, extra: dict[str, bytes] | None = None) -> Path:
    """A directory laid out like a package ansor-build wrote (manifest listing each file)."""
    files = {"model.so": b"so", "runtime/libtvm_runtime.so": b"rt", "src/ansor_runner.cc": b"cc"}
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    manifest = {"format": 1, "versions": {"ansor-build": "0.2.0"},
                "files": {name: {"sha256": "0" * 64, "size": len(data)} for name, data in files.items()}}
    (path / "manifest.json").write_text(json.dumps(manifest))
    for name, data in (extra or {}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return path


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def build_into(out, cwd) -> subprocess.CompletedProcess:
    return run_cli("build", MODEL, "--target", HOST_TARGET, "-o", out, cwd=cwd)


def test_build_into_user_directory_is_refused_and_untouched(tmp_path):
    proj = tmp_path / "proj"
    (proj / "src").mkdir(parents=True)
    (proj / "important.txt").write_text("data")
    before = snapshot(proj)
    line = one_line_error(build_into("proj", tmp_path))
    assert "proj: exists and is not a package ansor-build wrote" in line
    assert snapshot(proj) == before and (proj / "src").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj"]  # no staging directory left beside it


def test_build_into_home_like_directory_is_refused(tmp_path):
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    (home / ".bashrc").write_text("alias x=y")
    line = one_line_error(build_into(home, tmp_path))  # `-o ~` as the shell expands it
    assert "is not a package ansor-build wrote" in line
    assert (home / ".bashrc").read_text() == "alias x=y"


def test_build_into_current_directory_is_one_line_error(tmp_path):
    (tmp_path / "notes.txt").write_text("keep")
    line = one_line_error(build_into(".", tmp_path))
    assert f"({tmp_path})" in line and "not a package ansor-build wrote" in line
    assert (tmp_path / "notes.txt").read_text() == "keep"


def test_build_into_filesystem_root_is_one_line_error(tmp_path):
    assert "filesystem root" in one_line_error(build_into("/", tmp_path))


def test_build_into_symlink_is_refused_and_leaves_nothing(tmp_path):
    fake_package(tmp_path / "pkg")
    (tmp_path / "link").symlink_to("pkg")
    line = one_line_error(build_into("link", tmp_path))
    assert "link: is a symbolic link (to pkg)" in line
    assert (tmp_path / "link").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "pkg"]  # no .link.old-PID left behind


def test_build_over_a_file_is_refused(tmp_path):
    (tmp_path / "out").write_text("mine")
    assert "exists and is not a directory" in one_line_error(build_into("out", tmp_path))
    assert (tmp_path / "out").read_text() == "mine"


def test_package_with_user_file_inside_is_refused(tmp_path):
    pkg = fake_package(tmp_path / "pkg", {"notes.txt": b"mine", "runtime/extra.so": b"x"})
    with pytest.raises(InputError, match=r"holds files ansor-build did not write \(notes.txt and 1 more\)"):
        check_replaceable(pkg)
    assert foreign_files(pkg, json.loads((pkg / "manifest.json").read_text())) == ["notes.txt", "runtime/extra.so"]


def test_package_with_foreign_directory_or_link_inside_is_refused(tmp_path):
    pkg = fake_package(tmp_path / "pkg")
    (pkg / "data").mkdir()
    with pytest.raises(InputError, match=r"\(data\)"):
        check_replaceable(pkg)
    (pkg / "data").rmdir()
    (pkg / "runtime" / "link").symlink_to(tmp_path)  # a link to a directory is never followed
    with pytest.raises(InputError, match=r"\(runtime/link\)"):
        check_replaceable(pkg)


def test_foreign_manifest_is_not_ours(tmp_path):
    out = tmp_path / "npm-project"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"name": "app", "files": {}}))
    with pytest.raises(InputError, match="no manifest.json of ours"):
        check_replaceable(out)


def test_own_package_and_empty_directories_are_replaceable(tmp_path):
    check_replaceable(fake_package(tmp_path / "pkg", {"__pycache__/loader.cpython-311.pyc": b"pyc"}))
    (tmp_path / "empty" / "bin").mkdir(parents=True)  # SCons makes the package's directories before a build
    check_replaceable(tmp_path / "empty")
    check_replaceable(tmp_path / "new")


def test_staged_directory_replaces_own_package(tmp_path):
    pkg = fake_package(tmp_path / "pkg")
    with staged_directory(pkg) as stage:
        (stage / "manifest.json").write_text("{}")
    assert sorted(p.name for p in pkg.iterdir()) == ["manifest.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]


def test_staged_directory_rechecks_before_swap(tmp_path):
    pkg = fake_package(tmp_path / "pkg")
    with pytest.raises(InputError, match="notes.txt"):
        with staged_directory(pkg) as stage:
            (stage / "manifest.json").write_text("{}")
            (pkg / "notes.txt").write_text("written while the package was built")
    assert (pkg / "notes.txt").exists() and (pkg / "model.so").read_bytes() == b"so"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]


def test_failed_build_keeps_previous_package(tmp_path):
    pkg = fake_package(tmp_path / "pkg")
    before = snapshot(pkg)
    with pytest.raises(RuntimeError):
        with staged_directory(pkg) as stage:
            (stage / "manifest.json").write_text("{}")
            raise RuntimeError("compile failed")
    assert snapshot(pkg) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]


def test_stale_stages_of_killed_builds_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".pkg.tmp-{int(dead.stdout)}-abc123"
    live = tmp_path / f".pkg.tmp-{os.getppid()}-abc123"  # a concurrent build that is still running
    other = tmp_path / f".other.tmp-{int(dead.stdout)}-abc123"
    recent = tmp_path / f".pkg.tmp-{int(dead.stdout)}-def456"  # maybe another machine's build, still writing
    old = time.time() - 2 * 3600
    for path in (stale, live, other, recent):
        path.mkdir()
        if path is not recent:
            os.utime(path, (old, old))
    with staged_directory(tmp_path / "pkg") as stage:
        (stage / "manifest.json").write_text("{}")
    assert not stale.exists() and live.exists() and other.exists() and recent.exists()


def tune_into(records_out, cwd) -> subprocess.CompletedProcess:
    return run_cli("tune", MODEL, "--target", HOST_TARGET, "--tuning-dir", "tuning", "--tune", "reuse",
                   "--records-out", records_out, cwd=cwd)


def test_records_out_over_a_user_file_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("important")
    line = one_line_error(tune_into("notes.txt", tmp_path))
    assert "notes.txt: exists and is not an ansor-build records file" in line
    assert (tmp_path / "notes.txt").read_text() == "important"
    (tmp_path / "other.json").write_text(json.dumps({"format": 1, "name": "not records"}))
    assert "not an ansor-build records file" in one_line_error(tune_into("other.json", tmp_path))


def test_records_out_over_a_directory_or_link_is_refused(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "link.json").symlink_to(tmp_path / "dir")
    for name in ("dir", "link.json"):
        assert "is not a records file (a directory, link or device)" in one_line_error(tune_into(name, tmp_path))


def test_records_out_replaces_own_records_file(tmp_path):
    from ansor_build.tuning.driver import records_text, write_records_file

    tvm = {"kind": "llvm", "mtriple": "x86_64-linux-gnu"}
    path = tmp_path / "m.records.json"
    assert write_records_file(path, tvm, ["k"], {}) is True
    assert write_records_file(path, tvm, ["k"], {}) is False  # unchanged: untouched
    assert write_records_file(path, tvm, ["k", "k2"], {}, threads=2) is True
    assert path.read_text() == records_text(tvm, ["k", "k2"], {}, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.records.json"]


def real_manifest_package(path: Path) -> Path:
    """A directory with a manifest.json as a build writes it (sha256 and size of each file)."""
    from ansor_build.package.manifest import write_manifest

    fake_package(path)
    write_manifest(path, {"versions": {"ansor-build": "0.2.0"}}, ["model.so", "runtime/libtvm_runtime.so",
                                                                  "src/ansor_runner.cc"])
    return path


def test_archive_over_a_user_file_is_refused(tmp_path):
    real_manifest_package(tmp_path / "pkg")
    (tmp_path / "mine.tar.gz").write_text("not an archive")
    line = one_line_error(run_cli("archive", "pkg", "-o", "mine.tar.gz", cwd=tmp_path))
    assert "mine.tar.gz: exists and is not an archive of package 'pkg'" in line
    assert (tmp_path / "mine.tar.gz").read_text() == "not an archive"


def test_archive_replaces_only_an_archive_of_the_same_package(tmp_path):
    from ansor_build.package.archive import write_archive

    real_manifest_package(tmp_path / "pkg")
    real_manifest_package(tmp_path / "other")
    first = write_archive(tmp_path / "pkg")
    assert write_archive(tmp_path / "pkg") == first  # its own archive is replaced
    with pytest.raises(InputError, match="is not an archive of package 'other'"):
        write_archive(tmp_path / "other", first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "pkg", "pkg.tar.gz"]  # no temporary file left


def test_swap_defers_interruption_until_both_renames_are_done():
    import signal

    from ansor_build.package.staging import _signals_deferred

    seen = []
    previous = signal.signal(signal.SIGTERM, lambda *_: seen.append("SIGTERM"))
    try:
        with _signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            assert seen == []  # held while the swap runs
        time.sleep(0.05)
        assert seen == ["SIGTERM"]  # delivered once it is done
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_stop_request_dropped_by_python_still_stops_the_swap(tmp_path, monkeypatch):
    """Python drops a KeyboardInterrupt raised by a signal handler inside a weakref callback (seen during an import
    mid-build): the recorded request still keeps the new package out and the old one in place."""
    from ansor_build import interrupt

    pkg = fake_package(tmp_path / "pkg")
    before = snapshot(pkg)
    monkeypatch.setattr(interrupt, "_stop", 15)  # as if SIGTERM's exception had been dropped
    with pytest.raises(KeyboardInterrupt):
        with staged_directory(pkg) as stage:
            (stage / "manifest.json").write_text("{}")
    assert snapshot(pkg) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]

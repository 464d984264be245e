"""Damaged packages: every file truncated, fed to `verify` (in-process), `run` and the C++ runner (fresh
processes); damaged archives fed to `verify`."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansor_build.errors import AnsorError
from ansor_build.package.archive import write_archive
from ansor_build.package.verify import verify
from conftest import examples
from guard import assert_clean_exit, call_clean, snapshot
from helpers import run_cli
from mutate import byte_edits

pytestmark = pytest.mark.fuzz


def package_file_names(package):
    return sorted(json.loads((package / "manifest.json").read_text())["files"]) + ["manifest.json"]


def _truncated_copy(mlp_package, tmp_path, name, fraction):
    work = tmp_path / "work"
    package = work / "pkg"
    shutil.copytree(mlp_package, package, symlinks=True)
    path = package / name
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    return work, package


@pytest.fixture(scope="module")
def file_names(mlp_package):
    return package_file_names(mlp_package)


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_every_truncated_package_file_fails_verify_and_run_cleanly(mlp_package, tmp_path, fraction, file_names):
    for index, name in enumerate(file_names):
        case = tmp_path / str(index)
        work, package = _truncated_copy(mlp_package, case, name, fraction)
        result = call_clean(verify, package)
        assert isinstance(result, AnsorError) or not result.ok, f"verify missed truncated {name}"
        before = snapshot(work, skip="pkg")
        proc = run_cli("run", "pkg", "--repeat", "1", "--warmup", "0", cwd=work)
        assert_clean_exit(proc, f"run with {name} truncated to {fraction:.0%}")
        if name in ("model.so", "manifest.json") or name.startswith("runtime/"):
            assert proc.returncode == 1, f"run accepted truncated {name}"
        assert snapshot(work, skip="pkg") == before


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_runner_on_truncated_model_fails_with_a_message(mlp_package, tmp_path, fraction):
    work, package = _truncated_copy(mlp_package, tmp_path, "model.so", fraction)
    proc = subprocess.run([str(package / "bin/ansor_runner"), "--repeat", "1"], capture_output=True, text=True,
                          cwd=work, timeout=120)
    assert proc.returncode > 0 and proc.returncode < 128, f"exit {proc.returncode}: {proc.stderr}"
    assert "model.so" in proc.stderr, proc.stderr


@settings(max_examples=examples(60))
@given(data=st.data())
def test_damaged_archive_verifies_cleanly(tmp_path_factory, mlp_package, data):
    root = tmp_path_factory.mktemp("a")
    archive = root / "mlp.tar.gz"
    if not hasattr(test_damaged_archive_verifies_cleanly, "bytes"):
        test_damaged_archive_verifies_cleanly.bytes = write_archive(mlp_package, archive).read_bytes()
    archive.write_bytes(data.draw(byte_edits(test_damaged_archive_verifies_cleanly.bytes, max_edits=3)))
    result = call_clean(verify, archive)
    if not isinstance(result, AnsorError) and result.ok:  # only edits that change no member's bytes may pass
        assert _members(archive.read_bytes()) == _members(test_damaged_archive_verifies_cleanly.bytes)


def _members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}

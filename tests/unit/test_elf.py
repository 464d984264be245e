"""ELF reading (machine, class, needed libraries, symbol versions) on this machine's own binaries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ansor_build.errors import InputError
from ansor_build.package.elf import newest, read_elf, version_key
from ansor_build.toolchain import host_arch


def _readelf_versions(path: str) -> set[str]:
    out = subprocess.run(["readelf", "-V", path], capture_output=True, text=True, check=True).stdout
    return {line.split("Name:")[1].split()[0] for line in out.splitlines() if "Name:" in line and "Flags" in line}


def test_python_interpreter_matches_readelf():
    exe = str(Path(sys.executable).resolve())
    info = read_elf(exe)
    assert info.machine == host_arch() and info.bits == 64 and info.float_abi is None
    assert "libc.so.6" in info.needed
    mine = {name for names in info.versions.values() for name in names}
    assert mine == _readelf_versions(exe)
    assert newest(mine, "GLIBC") == max((v for v in mine if v.startswith("GLIBC_")), key=version_key)[6:]


def test_version_order_is_numeric():
    assert newest(["GLIBC_2.9", "GLIBC_2.17", "GLIBC_2.2.5", "GLIBCXX_3.4.30"], "GLIBC") == "2.17"
    assert newest(["GLIBCXX_3.4.9", "GLIBCXX_3.4.29", "CXXABI_1.3"], "GLIBCXX") == "3.4.29"
    assert newest(["GCC_3.0"], "GLIBC") is None


def test_not_an_elf_file(tmp_path):
    path = tmp_path / "x.so"
    path.write_text("hello")
    with pytest.raises(InputError, match="not an ELF file"):
        read_elf(path)

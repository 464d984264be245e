"""Reading what a package's ELF files are built for and need: machine, class, ARM float ABI, DT_NEEDED libraries
and the symbol versions they require (GLIBC_2.34, GLIBCXX_3.4.30, ...).

Pure Python (no readelf, no pyelftools), for any architecture's ELF: the build host checks cross-built files too.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

MACHINES = {3: "i386", 40: "arm", 62: "x86_64", 183: "aarch64"}
# ELF machine per target arch (the first field of the target triple).
ARCH_MACHINES = {"x86_64": "x86_64", "aarch64": "aarch64", "armv7l": "arm", "armv7": "arm", "armv7a": "arm",
                 "arm": "arm", "i686": "i386"}

_SHT_DYNSYM, _SHT_DYNAMIC, _SHT_VERNEED = 11, 6, 0x6FFFFFFE
_DT_NEEDED = 1
_EF_ARM_ABI_FLOAT_HARD = 0x400


@dataclass
class ElfInfo:
    """What one ELF file is for and what it needs from the system."""

    machine: str
    bits: int
    float_abi: str | None  # ARM only: "hard" or "soft"
    flags: int = 0  # e_flags (ARM: EABI version in the top byte)
    needed: list[str] = field(default_factory=list)
    versions: dict[str, list[str]] = field(default_factory=dict)  # library -> symbol versions it needs


def is_elf(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == b"\x7fELF"


def read_elf(path: str | Path) -> ElfInfo:
    """Parse the header, the dynamic section and the version needs of the ELF file `path`."""
    path = Path(path)
    data = path.read_bytes()
    if data[:4] != b"\x7fELF":
        raise InputError(f"{path}: not an ELF file")
    bits = {1: 32, 2: 64}.get(data[4])
    endian = {1: "<", 2: ">"}.get(data[5])
    if bits is None or endian is None:
        raise InputError(f"{path}: unsupported ELF class {data[4]} / data encoding {data[5]}")
    reader = _Reader(data, endian, bits)
    machine_id, flags = reader.header()
    machine = MACHINES.get(machine_id, f"machine-{machine_id}")
    float_abi = None
    if machine == "arm":
        float_abi = "hard" if flags & _EF_ARM_ABI_FLOAT_HARD else "soft"
    info = ElfInfo(machine=machine, bits=bits, float_abi=float_abi, flags=flags)
    sections = reader.sections()
    for section in sections:
        strings = sections[section["link"]] if section["link"] < len(sections) else None
        if section["type"] == _SHT_DYNAMIC and strings is not None:
            info.needed = [reader.cstring(strings, value) for tag, value in reader.dynamic(section)
                           if tag == _DT_NEEDED]
        elif section["type"] == _SHT_VERNEED and strings is not None:
            info.versions = reader.version_needs(section, strings)
    return info


class _Reader:
    def __init__(self, data: bytes, endian: str, bits: int):
        self.data, self.endian, self.bits = data, endian, bits
        self.word = "Q" if bits == 64 else "I"

    def unpack(self, fmt: str, offset: int) -> tuple:
        return struct.unpack_from(self.endian + fmt, self.data, offset)

    def header(self) -> tuple[int, int]:
        (machine,) = self.unpack("H", 18)
        flags_at = 48 if self.bits == 64 else 36
        (flags,) = self.unpack("I", flags_at)
        return machine, flags

    def sections(self) -> list[dict]:
        if self.bits == 64:
            (shoff,) = self.unpack("Q", 40)
            shentsize, shnum = self.unpack("HH", 58)
            layout = "IIQQQQIIQQ"
        else:
            (shoff,) = self.unpack("I", 32)
            shentsize, shnum = self.unpack("HH", 46)
            layout = "IIIIIIIIII"
        out = []
        for index in range(shnum):
            _, kind, _, _, offset, size, link, info, _, entsize = self.unpack(layout, shoff + index * shentsize)
            out.append({"type": kind, "offset": offset, "size": size, "link": link, "info": info,
                        "entsize": entsize})
        return out

    def cstring(self, strings: dict, offset: int) -> str:
        start = strings["offset"] + offset
        end = self.data.index(b"\0", start)
        return self.data[start:end].decode("utf-8", errors="replace")

    def dynamic(self, section: dict):
        entry = 16 if self.bits == 64 else 8
        for offset in range(section["offset"], section["offset"] + section["size"], entry):
            tag, value = self.unpack(self.word * 2, offset)
            if tag == 0:
                break
            yield tag, value

    def version_needs(self, section: dict, strings: dict) -> dict[str, list[str]]:
        needs: dict[str, list[str]] = {}
        offset = section["offset"]
        for _ in range(section["info"]):  # sh_info: the number of Verneed entries
            _, count, file_name, aux, next_entry = self.unpack("HHIII", offset)
            names = []
            aux_offset = offset + aux
            for _ in range(count):
                _, _, _, name, next_aux = self.unpack("IHHII", aux_offset)
                names.append(self.cstring(strings, name))
                aux_offset += next_aux
            needs[self.cstring(strings, file_name)] = sorted(names, key=version_key)
            if not next_entry:
                break
            offset += next_entry
        return needs


def version_key(name: str) -> tuple:
    """Sort key of symbol versions: GLIBC_2.9 < GLIBC_2.17 < GLIBC_2.34."""
    prefix, _, number = name.partition("_")
    parts = tuple(int(p) if p.isdigit() else 0 for p in number.split("."))
    return prefix, parts


def newest(versions: list[str], prefix: str) -> str | None:
    """The highest `PREFIX_x.y.z` of `versions`, as `x.y.z`; None when there is none."""
    mine = [name for name in versions if name.startswith(prefix + "_") and name[len(prefix) + 1:][:1].isdigit()]
    if not mine:
        return None
    return max(mine, key=version_key)[len(prefix) + 1:]

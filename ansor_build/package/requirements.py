"""What a device must provide to run a package, read off the package's own ELF files (and its GPU device code).

Recorded in the manifest as `requirements`: the CPU architecture every ELF file is built for, the newest glibc and
libstdc++ symbol versions any of them needs (overall and per file), the system libraries they load that the
package does not carry, and for GPU packages the NVIDIA driver that loads the device code.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ToolError
from .elf import ARCH_MACHINES, is_elf, newest, read_elf, version_key

# Minimum NVIDIA Linux driver per CUDA major version (CUDA minor-version compatibility: any 13.x toolkit's
# cubins, PTX and libcudart.so.13 work with an r580 or newer driver; 12.x with r525.60.13 or newer).
CUDA_DRIVER_MIN = {12: "525.60.13", 13: "580"}


def _max_version(values: list[str | None]) -> str | None:
    present = [v for v in values if v]
    return max(present, key=lambda v: version_key(f"V_{v}")) if present else None


def file_requirements(path: Path) -> dict:
    info = read_elf(path)
    versions = [name for names in info.versions.values() for name in names]
    entry = {"machine": info.machine, "bits": info.bits, "glibc": newest(versions, "GLIBC"),
             "glibcxx": newest(versions, "GLIBCXX"), "needed": info.needed}
    if info.float_abi:
        entry["float_abi"] = info.float_abi
    return entry


def package_requirements(package: Path, files: list[str], target, device_code: dict | None = None) -> dict:
    """The `requirements` manifest entry for the package in `package` (files relative to it).

    Raises ToolError when an ELF file is built for another CPU than the target's (a wrong toolchain.cxx).
    """
    per_file = {name: file_requirements(package / name) for name in sorted(files)
                if (package / name).is_file() and is_elf(package / name)}
    expected = ARCH_MACHINES.get(target.arch, target.arch)
    for name, entry in per_file.items():
        if entry["machine"] != expected:
            raise ToolError(f"checking {name}", str(package / name), None,
                            detail=f"it is {entry['machine']} code, the target '{target.name}' runs {expected} "
                                   f"(check toolchain.cxx in {target.path})")
    carried = {Path(name).name for name in files}
    system = sorted({lib for entry in per_file.values() for lib in entry["needed"]} - carried)
    out = {
        "arch": target.arch,
        "triple": target.triple,
        "glibc": _max_version([entry["glibc"] for entry in per_file.values()]),
        "glibcxx": _max_version([entry["glibcxx"] for entry in per_file.values()]),
        "system_libraries": system,
        "files": {name: {k: v for k, v in entry.items() if k != "needed"} for name, entry in per_file.items()},
    }
    if device_code is not None:
        major = int(device_code["nvcc"].split(".")[0]) if device_code["nvcc"][:1].isdigit() else None
        out["cuda_driver"] = CUDA_DRIVER_MIN.get(major, "unknown")
        out["cuda_arch"] = device_code["sass"]
    return out

#!/usr/bin/env bash
# Installs everything ansor-build, its examples and its tests need on a fresh Debian machine with Python 3.10+.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}

# Debian packages: g++ links model.so and the package runner; the cross compilers build ARM packages
# (aarch64, armv7 hard-float) and qemu-user runs the aarch64 ones on this machine (tests, examples).
DEBS=(g++ g++-aarch64-linux-gnu g++-arm-linux-gnueabihf qemu-user)
TOOLS=(g++ aarch64-linux-gnu-g++ arm-linux-gnueabihf-g++ qemu-aarch64)
missing=()
for i in "${!DEBS[@]}"; do
    command -v "${TOOLS[$i]}" >/dev/null 2>&1 || missing+=("${DEBS[$i]}")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# ansor-build (editable, so the SCons tool and target presets come from this checkout) with the test extra, which
# includes the check extra (onnxruntime: `ansor-build check`, env.AnsorCheck, the examples' checks).
"$PYTHON" -m pip install --disable-pip-version-check -q -e ".[test]"
"$PYTHON" -m ansor_build --version

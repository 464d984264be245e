#!/usr/bin/env bash
# Installs everything ansor-build, its examples and its tests need on a fresh Debian machine with Python 3.10+.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}

# A C++ compiler links model.so and the package runner (present on most images; installed when missing).
if ! command -v g++ >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null
fi

# ansor-build (editable, so the SCons tool and target presets come from this checkout) with the test extra.
"$PYTHON" -m pip install --disable-pip-version-check -q -e ".[test]"
"$PYTHON" -m ansor_build --version

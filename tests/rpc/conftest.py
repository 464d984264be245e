"""Fixtures of the rpc tier: real TVM RPC trackers and servers on 127.0.0.1 (see `rpc_farm`)."""

from __future__ import annotations

import pytest

from rpc_farm import KEY, Farm


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    """A tracker with two servers of key 'test' and one of key 'other', shared by a module's tests."""
    started = Farm(tmp_path_factory.mktemp("farm"), threads=1)
    try:
        started.add_servers(KEY, 2)
        started.add_servers("other", 1)
        yield started
    finally:
        started.close()


@pytest.fixture
def own_farm(tmp_path):
    """A tracker of this test alone (the test kills parts of it); the test adds its servers."""
    root = tmp_path / "farm"
    root.mkdir()
    started = Farm(root, threads=1)
    try:
        yield started
    finally:
        started.close()

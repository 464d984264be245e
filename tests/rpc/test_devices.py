"""`ansor-build devices`, and builds whose devices are absent: one-line errors within seconds, never a hang."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from ansor_build import zoo
from helpers import one_line_error, run_cli
from rpc_farm import HOST, KEY, free_port, write_target

pytestmark = [pytest.mark.tvm, pytest.mark.rpc]


def test_devices_lists_keys_with_free_pending_total(farm):
    doc = json.loads(run_cli("devices", "--tracker", farm.address, "--json", check=True).stdout)
    assert doc["tracker"] == farm.address
    assert {k["key"]: (k["free"], k["pending"], k["total"]) for k in doc["keys"]} == {KEY: (2, 0, 2),
                                                                                     "other": (1, 0, 1)}
    text = run_cli("devices", "--tracker", farm.address, check=True).stdout.splitlines()
    assert text[0] == f"tracker {farm.address}"
    assert text[1].split() == ["key", "free", "pending", "total"]
    assert [line.split() for line in text[2:]] == [["other", "1", "0", "1"], [KEY, "2", "0", "2"]]


def test_devices_of_an_unreachable_or_silent_tracker_fail_fast():
    closed = f"{HOST}:{free_port()}"
    started = time.perf_counter()
    line = one_line_error(run_cli("devices", "--tracker", closed))
    assert f"tracker {closed} is unreachable: Connection refused" in line
    # Something that accepts connections but never answers: the wait is bounded by --timeout.
    with socket.socket() as silent:
        silent.bind((HOST, 0))
        silent.listen()
        accepted = []
        threading.Thread(target=lambda: accepted.append(silent.accept()), daemon=True).start()
        line = one_line_error(run_cli("devices", "--tracker", f"{HOST}:{silent.getsockname()[1]}", "--timeout", "1"))
        assert "no answer in 1 s (is it a TVM RPC tracker?)" in line
        for conn, _ in accepted:
            conn.close()
    assert time.perf_counter() - started < 30
    assert "is not HOST:PORT" in one_line_error(run_cli("devices", "--tracker", "localhost"))


def test_build_without_devices_fails_before_tuning(tmp_path, farm):
    model = zoo.write_model("mlp", tmp_path / "mlp.onnx")
    tuning = tmp_path / "tuning"

    def tune(target):
        started = time.perf_counter()
        proc = run_cli("tune", model, "--target", target, "--tuning-dir", tuning, "--records-out", tmp_path / "r.json")
        return one_line_error(proc), time.perf_counter() - started

    line, seconds = tune(write_target(tmp_path / "rpi.yaml", farm.address, key="rpi4"))
    assert (f"rpi.yaml: tuning.runner.key: tracker {farm.address} has no free or busy device with key 'rpi4' "
            f"(keys it has: other (1), {KEY} (2))") in line
    closed = f"{HOST}:{free_port()}"
    line, seconds_closed = tune(write_target(tmp_path / "gone.yaml", closed))
    assert f"gone.yaml: tuning.runner.tracker: tracker {closed} is unreachable: Connection refused" in line
    assert max(seconds, seconds_closed) < 60  # model import and task extraction included; no waiting on the tracker
    assert not list(tuning.glob("*/*.jsonl"))  # nothing measured, nothing recorded
    assert not (tmp_path / "r.json").exists()
    # A build that needs no measurement needs no tracker.
    run_cli("tune", model, "--target", tmp_path / "gone.yaml", "--tuning-dir", tuning, "--tune", "reuse",
            "--records-out", tmp_path / "r.json", check=True)

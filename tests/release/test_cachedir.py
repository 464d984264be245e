"""Release pipelines with SCons CacheDir: a fresh checkout elsewhere compiles and tunes nothing, unrelated records
change no key, changed records of a used task do, and clean builds at two paths are byte-identical."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import time

import pytest

from release_project import MODELS, checkout
from helpers import run_cli

pytestmark = [pytest.mark.release, pytest.mark.scons, pytest.mark.tuning]


def test_first_build_compiles_tunes_and_archives(built_a):
    a, proc, _ = built_a
    assert len(a.commands(proc, "build")) == len(a.commands(proc, "tune")) == len(a.commands(proc, "archive")) == 2
    records = [json.loads((a.root / f"build/release/{name}.records.json").read_text()) for name in MODELS]
    assert len(records[0]["tasks"]) == 3 and records[0]["records"]
    assert records[0]["records"] == records[1]["records"]  # mlp_dyn at batch 1 is mlp: the same records apply
    assert len(list((a.root / "tuning").glob("*/models/*.json"))) == 2  # both task lists were committed


def test_fresh_checkout_elsewhere_gets_everything_from_the_cache(built_a, release_repo, tmp_path):
    a, _, cache = built_a
    b = checkout(release_repo["template"], tmp_path / "elsewhere" / "deeper" / "product")
    proc = b.scons("-j2", f"cache={cache}")
    assert b.commands(proc) == [], proc.stdout  # nothing compiled, tuned or archived
    assert b.retrieved(proc) == set(b.outputs())
    assert b.digests() == a.digests()
    assert b.scons("-q", f"cache={cache}", check=False).returncode == 0
    later = time.time() + 5000
    for path in (b.root / "tuning").rglob("*"):
        os.utime(path, (later, later))
    assert b.scons("-q", f"cache={cache}", check=False).returncode == 0  # mtimes are not in any key

    # Records of a model this repo does not build: new record files and a task list, nothing else changed.
    unrelated = release_repo["unrelated"]
    before = {p.relative_to(b.root / "tuning"): p.read_bytes() for p in (b.root / "tuning").rglob("*.json*")}
    after = {p.relative_to(unrelated): p.read_bytes() for p in unrelated.rglob("*.json*")}
    assert set(after) > set(before) and all(after[name] == data for name, data in before.items())
    c = checkout(release_repo["template"], tmp_path / "c" / "product", store=unrelated)
    proc = c.scons("-j2", f"cache={cache}")
    assert c.commands(proc) == [] and c.retrieved(proc) == set(c.outputs())


def test_changed_records_of_a_used_task_rerun_the_tuning_step(built_a, release_repo, tmp_path):
    _, _, cache = built_a
    d = checkout(release_repo["template"], tmp_path / "d")
    task_list = next((d.root / "tuning").glob("*/models/*.json"))
    key = json.loads(task_list.read_text())["tasks"][0]
    path = next((d.root / "tuning").glob(f"*/{key}.jsonl"))
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    header["trials"] += 1  # new content, same applied record
    path.write_text("\n".join([json.dumps(header, sort_keys=True, separators=(",", ":")), *lines[1:]]) + "\n")
    proc = d.scons("-j2", f"cache={cache}")
    assert len(d.commands(proc, "tune")) == 2  # both models use the task: no stale records from the cache
    assert d.commands(proc, "build") == []  # the same records: packages from the cache
    assert {f"build/release/{name}/model.so" for name in MODELS} <= d.retrieved(proc)


def test_clean_builds_in_two_checkouts_are_byte_identical(built_a, release_repo, tmp_path):
    a, _, _ = built_a
    e = checkout(release_repo["template"], tmp_path / "somewhere" / "else")
    proc = e.scons("-j2", "--cache-disable")
    assert len(e.commands(proc, "build")) == 2 and not e.retrieved(proc)
    digests = e.digests()
    assert digests == a.digests()
    for name, data in digests.items():  # no checkout path in any file (archives: inside the compressed tar)
        text = data if not name.endswith(".tar.gz") else gzip.decompress(data)
        assert str(e.root).encode() not in text and str(a.root).encode() not in text, name
    for name in MODELS:
        for item in (f"build/release/{name}", f"build/release/{name}.tar.gz"):
            assert run_cli("verify", e.root / item, check=True).stdout.startswith(f"{e.root / item}: ok, ")


def test_explain_lists_the_same_key_in_every_checkout(built_a, release_repo, tmp_path):
    a, _, _ = built_a
    f = checkout(release_repo["template"], tmp_path / "f")
    outputs = []
    for root in (a.root, f.root):
        proc = run_cli("explain", "models/mlp_dyn.onnx", "--target", "targets/release.yaml", "--shape", "input=1,64",
                       "--tune", "reuse", "-o", "build/release/mlp_dyn", "--json", cwd=root, check=True)
        outputs.append(json.loads(proc.stdout))
    assert outputs[0] == outputs[1]
    tune, build = outputs[0]
    assert [i["kind"] for i in tune["inputs"]].count("task records") == 3 and not tune["note"]
    records = next(i for i in build["inputs"] if i["kind"] == "records file")
    written = (a.root / "build/release/mlp_dyn.records.json").read_bytes()
    assert records["sha256"] == hashlib.sha256(written).hexdigest()  # explain renders what the tuning step wrote
    text = run_cli("explain", "models/mlp.onnx", "--target", "targets/release.yaml", cwd=a.root, check=True).stdout
    assert re.search(r"^build step -> PACKAGE/  key [0-9a-f]{16}$", text, re.MULTILINE)
    assert "host tools" in text and "records file" not in text  # tuning off: no records in the key

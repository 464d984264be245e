"""`ansor-build db merge / stats / prune` on record stores (no TVM: stores written with the store's own API)."""

from __future__ import annotations

import json
import shutil

import pytest

from ansor_build import zoo
from ansor_build.model import files_sha256
from ansor_build.target import load_target
from ansor_build.tuning.store import TOP_K, TuningStore, read_entry, target_dirname
from ansor_build.tuning.tasklist import write_task_list
from helpers import HOST_TARGET, one_line_error, run_cli

pytestmark = pytest.mark.release

TVM = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell", "num-cores": 2}
WORKLOAD = ["123", "d29ya2xvYWQ="]


def rec(us, tag):
    return {"run_us": [us], "trace": [[["Step", [tag]]], []], "args_info": [["TENSOR", "float32", [1]]]}


def files(directory):
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


@pytest.fixture
def two_stores(tmp_path):
    """Two machines' stores of one target: a shared ancestor (task "shared"), then each tuned on its own."""
    a, b = TuningStore(tmp_path / "a", TVM, "v"), TuningStore(tmp_path / "b", TVM, "v")
    for store in (a, b):
        store.add("shared", "fused_x", WORKLOAD, [rec(5.0, "s1"), rec(4.0, "s2")], trials=8, default_us=9.0)
    a.add("shared", "fused_x", WORKLOAD, [rec(3.0, "a1")], trials=4, default_us=8.0)
    b.add("shared", "fused_x", WORKLOAD, [rec(2.0, "b1"), rec(4.5, "s2")], trials=2)
    a.add("only_a", "fused_a", WORKLOAD, [rec(1.0, "x")], trials=3)
    b.add("only_b", "fused_b", WORKLOAD, [rec(1.0, "y")], trials=3)
    b.mark_exhausted("only_b")
    a.mark_budget("shared", 16)
    b.mark_budget("shared", 8)
    write_task_list(b.directory, "f" * 64, None, ["shared", "only_b"])
    return a, b


def test_merge_unites_deduplicates_and_is_order_independent(two_stores, tmp_path):
    a, b = two_stores
    run_cli("db", "merge", a.directory, b.directory, "-o", tmp_path / "ab", check=True)
    (tmp_path / "ba").mkdir()  # like cp: an existing directory receives the target directory
    run_cli("db", "merge", tmp_path / "b", tmp_path / "a", "-o", tmp_path / "ba", check=True)  # roots work too
    merged = tmp_path / "ab"
    assert files(merged) == files(tmp_path / "ba" / target_dirname(TVM))
    shared = read_entry(merged / "shared.jsonl")
    assert [r["run_us"] for r in shared.records] == [[2.0], [3.0], [4.0], [5.0]]  # s2 once, at its better time
    assert shared.trials == 12 and shared.default_us == 8.0  # the larger count (not 8 + 4 + 8 + 2); the smaller default
    assert read_entry(merged / "only_b.jsonl").exhausted and not read_entry(merged / "only_a.jsonl").exhausted
    assert shared.budget == 16 and read_entry(merged / "only_a.jsonl").budget == 0  # the larger share
    assert sorted(files(merged)) == ["models/" + next(iter(files(b.directory / "models"))), "only_a.jsonl",
                                     "only_b.jsonl", "shared.jsonl", "target.json"]
    assert json.loads((merged / "target.json").read_text())["tvm"] == TVM

    # Merging again changes nothing; merging into an existing store keeps what it has.
    proc = run_cli("db", "merge", a.directory, b.directory, "-o", merged, check=True)
    assert "(0 files written)" in proc.stdout
    run_cli("db", "merge", a.directory, "-o", b.directory, check=True)
    assert files(b.directory) == files(merged)


def test_merge_keeps_the_best_k(tmp_path):
    a, b = TuningStore(tmp_path / "a", TVM, "v"), TuningStore(tmp_path / "b", TVM, "v")
    a.add("k", "n", WORKLOAD, [rec(float(i), f"a{i}") for i in range(1, TOP_K + 1)], trials=TOP_K)
    b.add("k", "n", WORKLOAD, [rec(i + 0.5, f"b{i}") for i in range(TOP_K)], trials=TOP_K)
    run_cli("db", "merge", a.directory, b.directory, "-o", tmp_path / "out", check=True)
    entry = read_entry(tmp_path / "out" / "k.jsonl")
    assert len(entry.records) == TOP_K and entry.best_us == 0.5
    assert entry.records[-1]["run_us"] == [16.0]  # 0.5 .. 15.5 from b, 1 .. 16 from a: the 32 fastest


def test_merge_refuses_other_targets_corrupt_files_and_ambiguous_roots(two_stores, tmp_path):
    a, _ = two_stores
    other = TuningStore(tmp_path / "c", dict(TVM, **{"num-cores": 4}), "v")
    other.add("k", "n", WORKLOAD, [rec(1.0, "z")], trials=1)
    line = one_line_error(run_cli("db", "merge", a.directory, other.directory, "-o", tmp_path / "out"))
    assert f"{a.directory}/target.json and {other.directory}/target.json: different targets" in line
    assert not (tmp_path / "out").exists()

    line = one_line_error(run_cli("db", "merge", tmp_path / "a", tmp_path / "c", "-o", tmp_path / "a"))
    assert "different targets" in line

    (tmp_path / "mixed").mkdir()
    for store in (a, other):
        (tmp_path / "mixed" / store.directory.name).symlink_to(store.directory)
    line = one_line_error(run_cli("db", "merge", tmp_path / "mixed", "-o", tmp_path / "out"))
    assert "holds 2 target directories" in line and "--target" in line

    path = a.directory / "only_a.jsonl"
    path.write_text(path.read_text() + '{"run_us": [1.0], "tra\n')
    line = one_line_error(run_cli("db", "merge", a.directory, "-o", tmp_path / "out"))
    assert f"{path}:3: invalid JSON" in line and not (tmp_path / "out").exists()
    (a.directory / "target.json").write_text("{}")
    line = one_line_error(run_cli("db", "merge", a.directory, "-o", tmp_path / "out"))
    assert f"{a.directory}/target.json: not a format-1 target file" in line
    line = one_line_error(run_cli("db", "merge", tmp_path / "missing", "-o", tmp_path / "out"))
    assert f"{tmp_path}/missing: not found" in line


def test_stats_text_and_json(two_stores):
    _, b = two_stores
    b.mark_budget("only_b", 64)  # 3 trials: its share of a run of 64 per task
    path = b.directory / "only_b.jsonl"
    path.write_text(path.read_text() + "garbage\n")
    text = run_cli("db", "stats", b.directory.parent, check=True).stdout
    assert f"{b.directory}: 2 workloads, 4 records, 13 trials, 1 task lists; records from apache-tvm v" in text
    assert "fused_b" in text and "exhausted, share of 64/task, 1 unreadable lines" in text
    doc = json.loads(run_cli("db", "stats", b.directory, "--json", check=True).stdout)[0]
    rows = {row["key"]: row for row in doc["tasks"]}
    assert doc["target"] == TVM and rows["shared"]["best_us"] == 2.0 and rows["shared"]["default_us"] == 9.0
    assert rows["shared"]["records"] == 3 and rows["only_b"]["unreadable_lines"] == 1
    assert rows["only_b"]["budget"] == 64 and rows["shared"]["budget"] == 8


def test_stats_and_merge_of_records_that_cannot_be_true(two_stores, tmp_path):
    """Issue 21: a record line with run_us [-5] became the task's best (stats printed a speed-up of -1.8x)."""
    _, b = two_stores
    path = b.directory / "shared.jsonl"
    path.write_text(path.read_text() + json.dumps(rec(-5.0, "neg")) + "\n" + '{"run_us": [NaN], "trace": [], '
                    '"args_info": []}\n')
    proc = run_cli("db", "stats", b.directory, check=True)
    assert f"{path}:5: run_us value -5.0 is not a latency" in proc.stderr and f"{path}:6: invalid JSON" in proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("fused_x"))
    assert "2.0 us" in row and "4.5x" in row and "2 unreadable lines" in row and "-5" not in row
    line = one_line_error(run_cli("db", "merge", b.directory, "-o", tmp_path / "out"))
    assert f"{path}:5: run_us value -5.0 is not a latency" in line and not (tmp_path / "out").exists()


def test_stats_and_merge_of_a_target_directory_without_target_json(two_stores, tmp_path):
    a, _ = two_stores
    (a.directory / "target.json").unlink()
    proc = run_cli("db", "stats", a.directory, check=True)
    assert f"target unknown: {a.directory}/target.json: missing" in proc.stdout and "fused_a" in proc.stdout
    line = one_line_error(run_cli("db", "merge", tmp_path / "a", "-o", tmp_path / "out"))
    assert f"{a.directory}/target.json: missing" in line and "--tune reuse" in line
    assert not (tmp_path / "out").exists()


def test_prune_is_a_dry_run_until_applied(tmp_path):
    target = load_target(HOST_TARGET)
    store = TuningStore(tmp_path / "tuning", target.tuned_tvm(), "v")
    for key in ("k1", "k2", "gone"):
        store.add(key, f"fused_{key}", WORKLOAD, [rec(1.0, key)], trials=1)
    model = zoo.write_model("mlp", tmp_path / "mlp.onnx")
    kept_list = write_task_list(store.directory, files_sha256([model]), None, ["k1"])  # no TVM needed
    dropped_list = write_task_list(store.directory, "0" * 64, None, ["k1", "gone"])
    records = tmp_path / "pkg.records.json"
    records.write_text(json.dumps({"format": 1, "target": target.tuned_tvm(), "tasks": ["k2"], "records": {}}))

    args = ["db", "prune", tmp_path / "tuning", "--keep-models", model, "--target", HOST_TARGET,
            "--keep-records", records]
    dry = run_cli(*args, check=True).stdout
    assert "would drop 1 of 3 workloads and 1 task lists" in dry and "gone  fused_gone" in dry
    assert "dry run: pass --apply" in dry and store.path("gone").exists() and dropped_list.exists()
    assert "dropped 1 of 3" in run_cli(*args, "--apply", check=True).stdout
    assert store.keys() == ["k1", "k2"] and kept_list.exists() and not dropped_list.exists()
    assert "nothing to drop (2 workloads in use)" in run_cli(*args, check=True).stdout


def test_prune_rejects_bad_input(tmp_path):
    store = TuningStore(tmp_path / "tuning", TVM, "v")
    store.add("k", "n", WORKLOAD, [rec(1.0, "k")], trials=1)
    line = one_line_error(run_cli("db", "prune", store.directory))
    assert "nothing to keep given" in line
    line = one_line_error(run_cli("db", "prune", store.directory, "--keep-models", "m.onnx"))
    assert "--keep-models needs --target" in line
    line = one_line_error(run_cli("db", "prune", store.directory, "--keep-models", tmp_path / "m.onnx",
                                  "--target", HOST_TARGET))
    assert f"{store.directory}/target.json: records are for target" in line and "x86_64-avx2.yaml gives" in line
    wrong = tmp_path / "wrong.records.json"
    wrong.write_text(json.dumps({"format": 1, "target": {"kind": "cuda"}, "tasks": ["k"], "records": {}}))
    line = one_line_error(run_cli("db", "prune", store.directory, "--keep-records", wrong))
    assert f"{wrong}: records are for target" in line
    wrong.write_text("{")
    assert f"{wrong}: invalid JSON" in one_line_error(run_cli("db", "prune", store.directory, "--keep-records", wrong))
    assert store.keys() == ["k"]


@pytest.mark.tvm
def test_prune_finds_a_models_tasks_with_tvm_when_it_has_no_task_list(release_repo, tmp_path):
    store = tmp_path / "tuning"
    shutil.copytree(release_repo["unrelated"], store)
    template = release_repo["template"]
    used = {p.name for p in (template / "tuning").glob("*/*.jsonl")}
    unused = sorted({p.name for p in store.glob("*/*.jsonl")} - used)
    assert unused  # the other model's own subgraph
    for path in store.glob("*/models/*.json"):
        path.unlink()
    proc = run_cli("db", "prune", store, "--keep-models", template / "models/mlp.onnx",
                   template / "models/mlp_dyn.onnx", "--shape", "input=1,64", "--target",
                   template / "targets/release.yaml", "--apply", check=True)
    assert f"dropped {len(unused)} of {len(used) + len(unused)} workloads" in proc.stdout
    assert {p.name for p in store.glob("*/*.jsonl")} == used

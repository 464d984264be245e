"""Damaged target YAML files: in-process loads (many cases) and CLI builds (a few)."""

from __future__ import annotations

import yaml
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansor_build.errors import AnsorError
from ansor_build.target import load_target
from conftest import examples
from guard import assert_clean_exit, call_clean, snapshot
from helpers import PRESETS, run_cli
from mutate import byte_edits, tree_edits

pytestmark = pytest.mark.fuzz

PRESET_TEXT = {path.name: path.read_text() for path in sorted(PRESETS.glob("*.yaml"))}
PRESET_TREES = {name: yaml.safe_load(text) for name, text in PRESET_TEXT.items()}
PROPERTIES = ("name", "tvm", "tuned_tvm", "kind", "device", "triple", "arch", "runs_on_host", "cxx", "cxx_flags",
              "emulator", "threads", "runtime_libs", "key")


def _use(target) -> None:
    """Touch what builds read of a target: a value that loads must not fail later with a traceback."""
    for prop in PROPERTIES:
        value = getattr(target, prop, None)
        if callable(value):
            value()


def _load(path):
    result = call_clean(load_target, path)
    if not isinstance(result, AnsorError):
        call_clean(_use, result)


@settings(max_examples=examples(150))
@given(data=st.data())
def test_damaged_yaml_text_loads_or_fails_in_one_line(tmp_path_factory, data):
    name = data.draw(st.sampled_from(sorted(PRESET_TEXT)))
    text = data.draw(byte_edits(PRESET_TEXT[name].encode()))
    path = tmp_path_factory.mktemp("t") / "target.yaml"
    path.write_bytes(text)
    _load(path)


@settings(max_examples=examples(200))
@given(data=st.data())
def test_damaged_yaml_values_load_or_fail_in_one_line(tmp_path_factory, data):
    name = data.draw(st.sampled_from(sorted(PRESET_TREES)))
    tree = data.draw(tree_edits(PRESET_TREES[name]))
    path = tmp_path_factory.mktemp("t") / "target.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True))
    _load(path)


@settings(max_examples=examples(5))
@given(data=st.data())
def test_build_with_damaged_target_ends_cleanly(tmp_path_factory, mlp_model, data):
    tree = data.draw(tree_edits(PRESET_TREES["x86_64-avx2.yaml"]))
    work = tmp_path_factory.mktemp("work")
    (work / "keep").mkdir()
    (work / "keep" / "notes.txt").write_text("not ansor-build's")
    (work / "model.onnx").write_bytes(mlp_model.read_bytes())
    (work / "target.yaml").write_text(yaml.safe_dump(tree, allow_unicode=True))
    before = snapshot(work)
    proc = run_cli("build", "model.onnx", "--target", "target.yaml", "-o", "out", cwd=work)
    assert_clean_exit(proc, f"target: {tree!r}"[:2000])
    assert snapshot(work) == before

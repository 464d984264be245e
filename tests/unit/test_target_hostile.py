"""Target YAML files as hostile input (issue 21): every one ends in one InputError line, quickly and in little memory,
and never quotes a file that is not a target file."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

import pytest

from ansor_build.errors import InputError
from ansor_build.target import load_target
from ansor_build.target.llvm import check_llvm_names
from ansor_build.target.safeyaml import MAX_BYTES
from ansor_build.target.schema import describe

from helpers import PRESETS, one_line_error

X86 = "tvm: {kind: llvm, mtriple: x86_64-linux-gnu}\n"
SECRET = "s3cr3t-Pa55word"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def error_of(path) -> str:
    with pytest.raises(InputError) as info:
        load_target(path)
    message = str(info.value)
    assert "\n" not in message and len(message) < 600, message
    return message


def alias_bomb(levels: int = 9) -> str:
    """~500 bytes whose value, aliases expanded, is 9**levels strings (9**9: some 2 GB of repr)."""
    names = "abcdefghijklmnopqrstuvwxyz"[:levels]
    lines = ["description:", "  - &a [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"  - &{name} [" + ", ".join([f"*{prev}"] * 9) + "]" for prev, name in zip(names, names[1:])]
    return "\n".join(lines) + "\n" + X86


def _one_gigabyte():
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


# 1. Alias bombs, deep nesting, huge files: bounded work, one line.

@pytest.mark.parametrize("levels", [9, 10])
def test_alias_bomb_is_one_line_error_in_little_time_and_memory(tmp_path, levels):
    bomb = write(tmp_path, "bomb.yaml", alias_bomb(levels))
    assert len(bomb.read_bytes()) < 700
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "ansor_build", "build", tmp_path / "m.onnx", "--target", bomb,
                           "-o", tmp_path / "out"], capture_output=True, text=True, timeout=120,
                          preexec_fn=_one_gigabyte)
    line = one_line_error(proc)
    assert time.monotonic() - started < 20
    assert line.startswith(f"ansor-build: error: {bomb}: line ")
    assert "YAML aliases expand beyond 10000 nodes (an alias bomb?)" in line


def test_alias_bomb_of_a_long_string_is_refused(tmp_path):
    text = "x: &s " + "x" * 200_000 + "\ndescription: [" + ", ".join(["*s"] * 1000) + "]\n" + X86
    assert f"{tmp_path / 'b.yaml'}: line 2: YAML aliases expand beyond {MAX_BYTES} characters" in error_of(
        write(tmp_path, "b.yaml", text))


def test_recursive_alias_is_refused(tmp_path):
    message = error_of(write(tmp_path, "r.yaml", "description: &a [*a]\n" + X86))
    assert message.endswith("r.yaml: line 1: a YAML alias refers to a collection that contains it "
                            "(a recursive structure)")


@pytest.mark.parametrize("text", ["description: " + "[" * 10_000 + "]" * 10_000 + "\n",
                                  "description: " + "{a: " * 10_000 + "b" + "}" * 10_000 + "\n",
                                  "description:\n" + "- " * 5000 + "x\n"],
                         ids=["flow-lists", "flow-mappings", "block-lists"])
def test_deep_nesting_is_one_line_error_not_recursion_error(tmp_path, text):
    assert "YAML collections nested deeper than 32 levels" in error_of(write(tmp_path, "deep.yaml", text))


def test_file_larger_than_the_cap_is_refused_unread(tmp_path):
    big = write(tmp_path, "big.yaml", X86 + "#" * (MAX_BYTES + 1) + "\n")
    assert f"more than a target file may have ({MAX_BYTES})" in error_of(big)


def test_many_nodes_stop_early(tmp_path):
    flat = write(tmp_path, "flat.yaml", "description: [" + "0," * (MAX_BYTES // 2 - 20) + "]\n")
    started = time.monotonic()
    assert "the YAML has more than 10000 nodes" in error_of(flat)
    assert time.monotonic() - started < 10


def test_describe_is_bounded_for_shared_and_deep_values():
    level = ["lol"] * 9
    for _ in range(12):  # 9**12 strings once expanded
        level = [level] * 9
    assert describe(level) == "list [[[[[...], [...], [...], [...], [...]..."
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert len(describe(deep)) < 60
    assert describe(10 ** 1000) == "integer <an integer of about 1001 digits>"
    assert describe("x" * 10 ** 6) == "string '" + "x" * 36 + "..."


@pytest.mark.parametrize("text, expected", [
    ("description: 2020-13-45\n", "line 1, column 14: invalid YAML: not a valid !!timestamp"),
    ("description: !!int abc\n", "not a valid !!int"),
    ("tvm: {num-cores: " + "9" * 5000 + "}\n", "line 1: a number of 5000 characters (at most 100)"),
    ("tvm: {num-cores: 1" + ":0" * 50_000 + "}\n", "a number of 100001 characters (at most 100)"),
    ('"a\\nb": 1\n', "'a\\nb': unknown key"),
    ("\x00: 1\n", "invalid YAML"),
])
def test_values_yaml_cannot_construct_are_one_line_errors(tmp_path, text, expected):
    assert expected in error_of(write(tmp_path, "v.yaml", text))


# 2. A file reached through `extends` that is not a target file is named, never quoted.

@pytest.mark.parametrize("content, what", [
    (f"root:x:0:0:{SECRET}:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n",
     "its top level is a string, expected a mapping"),
    (f"- {SECRET}\n", "its top level is a list, expected a mapping"),
    (f"{SECRET}: [unclosed\n", "invalid YAML at line 2, column 1"),
    (b"\x7fELF\x02\x01\x01\x00\xff\xfe" + SECRET.encode(), "not UTF-8 text"),
])
def test_extends_of_a_file_that_is_not_a_target_file_does_not_quote_it(tmp_path, content, what):
    foreign = write(tmp_path, "passwd", content)
    target = write(tmp_path, "t.yaml", f"extends: {foreign}\n" + X86)
    message = error_of(target)
    assert message == f"{target}: extends: '{foreign}' is not a target file ({what})"
    assert SECRET not in message


@pytest.mark.parametrize("name, what", [("/etc/passwd", "its top level is a string, expected a mapping"),
                                        ("/dev/zero", "cannot read it: not a regular file"),
                                        ("/", "cannot read it: it is a directory, not a target file")])
def test_extends_of_system_files(tmp_path, name, what):
    if not os.path.exists(name):
        pytest.skip(f"no {name} here")
    target = write(tmp_path, "t.yaml", f"extends: {name}\n")
    message = error_of(target)
    assert message == f"{target}: extends: '{name}' is not a target file ({what})"


def test_extends_absolute_and_relative_target_files_still_work(tmp_path):
    base = write(tmp_path / "", "base.yaml", X86 + "runtime: {threads: 2}\n")
    (tmp_path / "sub").mkdir()
    absolute = write(tmp_path / "sub", "a.yaml", f"extends: {base}\ntvm: {{mcpu: haswell}}\n")
    relative = write(tmp_path / "sub", "r.yaml", "extends: ../base.yaml\ntvm: {mcpu: haswell}\n")
    for path in (absolute, relative):
        target = load_target(path)
        assert target.tvm["mcpu"] == "haswell" and target.threads == 2
        assert [f.resolve() for f in target.files] == [path, base]


def test_extends_chains_are_bounded(tmp_path):
    for i in range(40):
        write(tmp_path, f"t{i}.yaml", f"extends: t{i + 1}.yaml\n")
    assert "extends: a chain of more than 16 files" in error_of(tmp_path / "t0.yaml")


def test_extends_names_no_file_can_have_are_one_line_errors(tmp_path):
    assert "extends: no preset named 'xxxxx" in error_of(write(tmp_path, "a.yaml", "extends: " + "x" * 5000 + "\n"))
    assert "extends: 'a\\x00b.yaml' is not a target file (cannot read it: the name contains a NUL byte)" in error_of(
        write(tmp_path, "b.yaml", 'extends: "a\\0b.yaml"\n'))
    assert "is not a target file (cannot read it: File name too long)" in error_of(
        write(tmp_path, "c.yaml", "extends: ./" + "x" * 5000 + ".yaml\n"))


# 3. Numbers: integers that are integers, within sane bounds.

@pytest.mark.parametrize("text, expected", [
    ("tvm: {num-cores: 1e20}\n", "tvm.num-cores: expected an integer, found string '1e20'"),
    ("tvm: {num-cores: 1.0e+20}\n", "tvm.num-cores: expected an integer, found number 1e+20"),
    ("tvm: {num-cores: 1000000000000000000000000000000}\n",
     "tvm.num-cores: 1000000000000000000000000000000 is too large (maximum 4096)"),
    ("tvm: {num-cores: 4097}\n", "tvm.num-cores: 4097 is too large (maximum 4096)"),
    ("tvm: {num-cores: 2.5}\n", "tvm.num-cores: expected an integer, found number 2.5"),
    ("tvm: {num-cores: true}\n", "tvm.num-cores: expected an integer, found boolean True"),
    ("tvm: {num-cores: 0x10000000000000000000}\n", "is too large (maximum 4096)"),
    ("runtime: {threads: 1000000}\n", "runtime.threads: 1000000 is too large (maximum 4096)"),
    ("tvm: {max_num_threads: 99999999}\n", "tvm.max_num_threads: 99999999 is too large (maximum 4096)"),
    ("tuning: {time_budget: .nan}\n", "tuning.time_budget: nan is not allowed (expected a finite number)"),
    ("tuning: {time_budget: .inf}\n", "tuning.time_budget: inf is not allowed (expected a finite number)"),
    ("tuning: {trials: 10000000000}\n", "tuning.trials: 10000000000 is too large (maximum 1000000000)"),
    ("tuning: {runner: {parallel: 100000}}\n", "tuning.runner.parallel: 100000 is too large (maximum 4096)"),
    ("tuning: {runner: {timeout: 1.0e+300}}\n", "tuning.runner.timeout: 1e+300 is too large (maximum 86400)"),
    ("tuning: {runner: {timeout: false}}\n", "tuning.runner.timeout: expected a number, found boolean False"),
    ("tuning: {runner: {kind: rpc, key: k, tracker: 'h:" + "9" * 5000 + "'}}\n", "is not HOST:PORT"),
    ("tuning: {runner: {kind: rpc, key: k, tracker: 'h:\u00b2'}}\n", "'h:²' is not HOST:PORT"),
])
def test_huge_and_non_integer_numbers_are_one_line_errors(tmp_path, text, expected):
    path = write(tmp_path, "n.yaml", "extends: x86_64\n" + text)
    message = error_of(path)
    assert message.startswith(f"{path}: ") and expected in message


@pytest.mark.parametrize("key, value", [("mtriple", "'x86_64-linux-gnu -mcpu=foo'"), ("mcpu", "'haswell -mattr=+x'"),
                                        ("mattr", "['+avx2,+fma']"), ("mattr", "['avx2']"), ("arch", "'sm_80 x'")])
def test_llvm_names_are_single_words(tmp_path, key, value):
    message = error_of(write(tmp_path, "w.yaml", f"extends: x86_64\ntvm: {{{key}: {value}}}\n"))
    assert f"tvm.{key}: " in message and "is not allowed" in message


# 4. mcpu (and mtriple) checked against LLVM's names for the triple.

def fake_llvm(triple):
    return {"x86_64-linux-gnu": ("generic", "haswell", "skylake", "x86-64"),
            "aarch64-linux-gnu": ("generic", "cortex-a72", "cortex-a78", "cortex-a78ae")}.get(triple)


def test_unknown_mcpu_is_refused_with_a_suggestion(tmp_path):
    path = write(tmp_path, "c.yaml", "extends: x86_64\ntvm: {mcpu: haswel}\n")
    with pytest.raises(InputError) as info:
        check_llvm_names(load_target(path), fake_llvm)
    assert str(info.value) == (f"{path}: tvm.mcpu: 'haswel' is not a CPU LLVM knows for x86_64-linux-gnu; did you "
                               f"mean 'haswell'? (see `llc -mtriple=x86_64-linux-gnu -mcpu=help`)")
    with pytest.raises(InputError, match="tvm.mcpu: 'notacpu' is not a CPU LLVM knows for x86_64-linux-gnu "):
        check_llvm_names(load_target(write(tmp_path, "d.yaml", "extends: x86_64\ntvm: {mcpu: notacpu}\n")),
                         fake_llvm)


def test_unknown_mcpu_is_named_in_the_file_that_set_it(tmp_path):
    base = write(tmp_path, "base.yaml", X86 + "description: base\n")
    middle = write(tmp_path, "middle.yaml", "extends: base.yaml\ntvm: {mcpu: notacpu}\n")
    child = write(tmp_path, "child.yaml", "extends: middle.yaml\nruntime: {threads: 2}\n")
    with pytest.raises(InputError, match=f"^{middle}: tvm.mcpu: 'notacpu'"):
        check_llvm_names(load_target(child), fake_llvm)
    assert load_target(child).origins["tvm.mtriple"] == base


def test_host_mcpu_of_a_gpu_target_is_checked(tmp_path):
    path = write(tmp_path, "g.yaml", "extends: jetson-orin\ntvm: {host: {mcpu: cortex-a78x}}\n")
    with pytest.raises(InputError, match=f"^{path}: tvm.host.mcpu: 'cortex-a78x' is not a CPU LLVM knows for "
                                         "aarch64-linux-gnu; did you mean 'cortex-a78'"):
        check_llvm_names(load_target(path), fake_llvm)


def test_unknown_triple_is_refused(tmp_path):
    path = write(tmp_path, "t.yaml", "tvm: {kind: llvm, mtriple: foo-bar-baz}\n")
    with pytest.raises(InputError, match=f"^{path}: tvm.mtriple: 'foo-bar-baz' is not a triple LLVM can compile for"):
        check_llvm_names(load_target(path), fake_llvm)


def test_known_cpus_and_targets_without_mcpu_pass(tmp_path):
    for text in ("extends: x86_64\ntvm: {mcpu: skylake}\n", X86,
                 "extends: jetson-orin\ntvm: {host: {mcpu: generic}}\n"):
        check_llvm_names(load_target(write(tmp_path, "ok.yaml", text)), fake_llvm)


@pytest.mark.tvm
def test_tvm_llvm_knows_every_preset_cpu_and_refuses_unknown_ones(tmp_path):
    pytest.importorskip("tvm")
    for preset in sorted(PRESETS.glob("*.yaml")):
        check_llvm_names(load_target(preset))
    with pytest.raises(InputError, match="'notacpu' is not a CPU LLVM knows for x86_64-linux-gnu"):
        check_llvm_names(load_target(write(tmp_path, "c.yaml", "extends: x86_64\ntvm: {mcpu: notacpu}\n")))
    with pytest.raises(InputError, match="'foo-bar-baz' is not a triple LLVM can compile for"):  # TVM would crash
        check_llvm_names(load_target(write(tmp_path, "t.yaml", "tvm: {kind: llvm, mtriple: foo-bar-baz}\n")))


@pytest.mark.parametrize("text", ["name: 'a/b'", "name: '..'", "name: \"x\\ny\"", "description: \"two\\nlines\"",
                                  "description: '" + "d" * 501 + "'"])
def test_name_and_description_stay_one_line_and_out_of_paths(tmp_path, text):
    path = write(tmp_path, "t.yaml", f"extends: x86_64-avx2\n{text}\n")
    message = error_of(path)
    assert "is not allowed" in message and "\n" not in message

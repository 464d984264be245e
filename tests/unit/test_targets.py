"""Target YAML loading: presets, extends, validation messages (no TVM)."""

from __future__ import annotations

import pytest

from ansor_build.errors import InputError
from ansor_build.target import load_target

from helpers import PRESETS


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("preset", sorted(p.name for p in PRESETS.glob("*.yaml")))
def test_every_preset_loads(preset):
    target = load_target(PRESETS / preset)
    assert target.tvm["kind"] in ("llvm", "cuda")
    assert target.triple


def test_avx2_preset_extends_generic():
    target = load_target(PRESETS / "x86_64-avx2.yaml")
    assert target.tvm == {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell",
                          "mattr": ["+avx2", "+fma"]}
    assert [p.name for p in target.files] == ["x86_64-avx2.yaml", "x86_64.yaml"]
    assert target.name == "x86_64-avx2"
    assert target.runs_on_host


def test_extends_relative_path_and_deep_merge(tmp_path):
    write(tmp_path, "base.yaml", "tvm: {kind: llvm, mtriple: x86_64-linux-gnu, mattr: ['+sse4.2']}\n"
                                 "runtime: {threads: 4}\n")
    child = write(tmp_path, "child.yaml", "extends: base.yaml\nname: mine\ntvm: {mcpu: skylake}\n")
    target = load_target(child)
    assert target.name == "mine"
    assert target.tvm == {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mattr": ["+sse4.2"], "mcpu": "skylake"}
    assert target.threads == 4
    assert target.files == (child, tmp_path / "base.yaml")


def test_key_ignores_description_but_not_tvm(tmp_path):
    a = load_target(write(tmp_path, "a.yaml", "description: one\ntvm: {kind: llvm, mtriple: x86_64-linux-gnu}\n"))
    b = load_target(write(tmp_path, "b.yaml", "description: two\ntvm: {kind: llvm, mtriple: x86_64-linux-gnu}\n"))
    c = load_target(write(tmp_path, "c.yaml", "tvm: {kind: llvm, mtriple: x86_64-linux-gnu, mcpu: haswell}\n"))
    assert a.key() == b.key() != c.key()


X86 = "tvm: {kind: llvm, mtriple: x86_64-linux-gnu}\n"


@pytest.mark.parametrize("text, expected", [
    ("tvm: {kind: llvm, mtriple: x86_64-linux-gnu, mcpuu: haswell}\n",
     "tvm.mcpuu: unknown key; did you mean 'tvm.mcpu'?"),
    ("tvmm: {kind: llvm}\n", "tvmm: unknown key; did you mean 'tvm'?"),
    ("tvm: {kind: llvm, mtriple: x86_64-linux-gnu, num-cores: two}\n",
     "tvm.num-cores: expected an integer, found string 'two'"),
    ("tvm: {kind: llvm, mtriple: x86_64-linux-gnu, mattr: +avx2}\n",
     "tvm.mattr: expected a list of strings, found string '+avx2'"),
    ("tvm: {kind: vulkan}\n", "tvm.kind: 'vulkan' is not allowed (expected one of: llvm, cuda)"),
    ("tvm: {kind: llvm, mtriple: x86_64-linux-gnu, num-cores: 0}\n", "tvm.num-cores: 0 is too small (minimum 1)"),
    ("runtime: {runner: yes please}\ntvm: {kind: llvm}\n", "runtime.runner: expected true or false"),
    ("tvm: {kind: llvm}\n", "tvm.mtriple: missing"),
    ("description: x\n", "tvm.kind: missing"),
    ("tvm: {kind: cuda, host: {kind: llvm, mtriple: x86_64-linux-gnu}}\n", "tvm.arch: missing"),
    ("- a\n- b\n", "top level: expected a mapping of keys, found list"),
    ("tvm: {kind: llvm\n", "invalid YAML"),
    ("extends: x86-64\n", "extends: no preset named 'x86-64'; did you mean 'x86_64'?"),
    ("extends: ../nowhere.yaml\n", "extends: file '../nowhere.yaml' not found"),
    ("toolchain: {emulator: qemu-aarch64}\n", "toolchain.emulator: expected a list of strings, found string"),
    ("toolchain: {emulater: [qemu-aarch64]}\n", "toolchain.emulater: unknown key; did you mean 'toolchain.emulator'?"),
    ("runtime: {libs: pypi}\n", "runtime.libs: 'pypi' is not allowed (expected one of: host, wheel, none)"),
    ("runtime: {ptx: sometimes}\n", "runtime.ptx: expected true or false, found string 'sometimes'"),
    ("toolchain: {nvcc: [nvcc]}\n", "toolchain.nvcc: expected a string, found list"),
    (X86 + "tuning: {runner: {kind: ssh}}\n", "tuning.runner.kind: 'ssh' is not allowed (expected one of: local, rpc)"),
    (X86 + "tuning: {runner: {kind: rpc, key: rpi4}}\n",
     "tuning.runner.tracker: missing; runner kind 'rpc' needs tuning.runner.tracker (HOST:PORT) and tuning.runner.key"),
    (X86 + "tuning: {runner: {kind: rpc, tracker: 'h:9190'}}\n", "tuning.runner.key: missing"),
    (X86 + "tuning: {runner: {kind: rpc, tracker: 10.0.0.5, key: k}}\n",
     "tuning.runner.tracker: '10.0.0.5' is not HOST:PORT (e.g. 10.0.0.5:9190; the port is 1-65535)"),
    (X86 + "tuning: {runner: {kind: rpc, tracker: 'h:70000', key: k}}\n", "tuning.runner.tracker: 'h:70000' is not"),
    (X86 + "tuning: {runner: {parallel: 0}}\n", "tuning.runner.parallel: 0 is too small (minimum 1)"),
    (X86 + "tuning: {runner: {timeout: soon}}\n", "tuning.runner.timeout: expected a number, found string 'soon'"),
    (X86 + "tuning: {runner: {trackers: 'h:1'}}\n",
     "tuning.runner.trackers: unknown key; did you mean 'tuning.runner.tracker'?"),
    (X86 + "tuning: {runner: rpc}\n", "tuning.runner: expected a mapping, found string 'rpc'"),
    (X86 + "optimize: {fast_math: maybe}\n", "optimize.fast_math: expected true or false, found string 'maybe'"),
    (X86 + "optimize: {fastmath: false}\n", "optimize.fastmath: unknown key; did you mean 'optimize.fast_math'?"),
    (X86 + "optimize: {conv_layout: nhwc}\n", "optimize.conv_layout: 'nhwc' is not allowed (expected one of: NHWC, NCHW)"),
    (X86 + "runtime: {vm: jit}\n", "runtime.vm: 'jit' is not allowed (expected one of: compiled, bytecode)"),
])
def test_bad_target_one_line_error(tmp_path, text, expected):
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(InputError) as info:
        load_target(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert expected in message
    assert "\n" not in message


def test_runner_default_local_and_rpc_not_part_of_the_key(tmp_path):
    base = write(tmp_path, "base.yaml", "extends: aarch64-cortex-a72\ntuning: {trials_per_task: 8}\n")
    pi = write(tmp_path, "pi.yaml", "extends: base.yaml\ntuning: {runner: {kind: rpc, tracker: '10.0.0.5:9190', "
                                    "key: rpi4, parallel: 4}}\n")
    local, remote = load_target(base).runner, load_target(pi).runner
    assert (local.kind, local.is_rpc, local.parallel) == ("local", False, 1)
    assert (remote.kind, remote.host, remote.port, remote.key, remote.parallel, remote.timeout) == (
        "rpc", "10.0.0.5", 9190, "rpi4", 4, 30.0)
    assert remote.tracker == "10.0.0.5:9190" and remote.source == str(pi)
    assert remote.cxx == "aarch64-linux-gnu-g++"  # candidates are linked with the target's toolchain
    assert load_target(base).tuning["trials_per_task"] == load_target(pi).tuning["trials_per_task"] == 8
    # Where a target is measured does not change its records: the same key and record store.
    assert load_target(base).key() == load_target(pi).key()
    assert load_target(base).tuned_tvm() == load_target(pi).tuned_tvm()


def test_error_in_extended_file_names_that_file(tmp_path):
    base = write(tmp_path, "base.yaml", "tvm: {kind: llvm, mtriple: x86_64-linux-gnu, mcpu: 3}\n")
    child = write(tmp_path, "child.yaml", "extends: base.yaml\n")
    with pytest.raises(InputError, match=f"^{base}: tvm.mcpu: expected a string, found integer 3"):
        load_target(child)


def test_extends_cycle(tmp_path):
    write(tmp_path, "a.yaml", "extends: b.yaml\n")
    write(tmp_path, "b.yaml", "extends: a.yaml\n")
    with pytest.raises(InputError, match="extends: cycle"):
        load_target(tmp_path / "a.yaml")


def test_missing_target_file(tmp_path):
    with pytest.raises(InputError, match="target file not found"):
        load_target(tmp_path / "nope.yaml")


def test_arm_presets_cross_compile_and_name_their_tools():
    aarch64 = load_target(PRESETS / "aarch64.yaml")
    assert (aarch64.arch, aarch64.triple, aarch64.runs_on_host) == ("aarch64", "aarch64-linux-gnu", False)
    assert aarch64.cxx == "aarch64-linux-gnu-g++" and aarch64.debian_package == "g++-aarch64-linux-gnu"
    assert aarch64.emulator == ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"]
    assert aarch64.emulator_package == "qemu-user" and aarch64.runtime_libs == "wheel"
    pi4 = load_target(PRESETS / "aarch64-cortex-a72.yaml")
    assert pi4.tvm["mcpu"] == "cortex-a72" and pi4.threads == 4 and pi4.runtime_libs == "wheel"
    armv7 = load_target(PRESETS / "armv7.yaml")
    assert armv7.tvm == {"kind": "llvm", "mtriple": "armv7l-linux-gnueabihf", "mattr": ["+neon"], "mfloat-abi": "hard"}
    assert (armv7.arch, armv7.cxx, armv7.runtime_libs, armv7.build_runner) == (
        "armv7l", "arm-linux-gnueabihf-g++", "none", False)


@pytest.mark.parametrize("arch", ["sm_75", "sm_80", "sm_86", "sm_89", "sm_90"])
def test_gpu_presets_compile_device_code_for_their_arch_on_an_x86_host(arch):
    target = load_target(PRESETS / f"cuda-{arch}.yaml")
    assert target.tvm["arch"] == arch and target.device == "cuda" and target.kind == "cuda"
    assert (target.arch, target.triple, target.runs_on_host) == ("x86_64", "x86_64-linux-gnu", True)
    assert target.nvcc == "nvcc" and target.embed_ptx and target.runtime_libs == "host"


def test_jetson_preset_is_an_sm_87_gpu_with_an_aarch64_host():
    target = load_target(PRESETS / "jetson-orin.yaml")
    assert target.tvm["arch"] == "sm_87" and target.tvm["host"]["mtriple"] == "aarch64-linux-gnu"
    assert (target.device, target.arch, target.cxx, target.runtime_libs) == (
        "cuda", "aarch64", "aarch64-linux-gnu-g++", "wheel")


def test_fast_math_is_on_unless_the_target_turns_it_off(tmp_path):
    assert load_target(write(tmp_path, "a.yaml", X86)).fast_math is True
    assert load_target(write(tmp_path, "b.yaml", X86 + "optimize: {fast_math: false}\n")).fast_math is False


def test_cpu_targets_run_convs_channels_last_and_the_compiled_vm_by_default(tmp_path):
    cpu = load_target(write(tmp_path, "a.yaml", X86))
    assert (cpu.conv_layout, cpu.vm) == ("NHWC", "compiled")
    kept = load_target(write(tmp_path, "b.yaml", X86 + "optimize: {conv_layout: NCHW}\nruntime: {vm: bytecode}\n"))
    assert (kept.conv_layout, kept.vm) == ("NCHW", "bytecode")
    assert load_target(PRESETS / "cuda-sm_90.yaml").vm == "bytecode"  # GPU packages keep the interpreted VM

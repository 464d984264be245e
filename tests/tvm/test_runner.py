"""The C++ package runner (ansor_build/runner): build, determinism, and runs under an empty environment."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ansor_build.errors import InputError, ToolError
from ansor_build.runner import RUNNER_SOURCE_DIR, build_runner, runner_sources

pytestmark = pytest.mark.tvm

tvm = pytest.importorskip("tvm")
onnx = pytest.importorskip("onnx")

if shutil.which("g++") is None:  # pragma: no cover
    pytest.skip("g++ not available", allow_module_level=True)

ENV_I = ["env", "-i"]
INPUTS = [("x", (2, 8), "float32"), ("ids", (3,), "int64"), ("h", (5,), "float16")]
OUTPUTS = [("y", (2, 4), "float32"), ("s", (), "float32"), ("z", (3,), "int64"), ("h2", (5,), "float16")]


def _onnx_model():
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((8, 16)).astype("float32")
    b1 = rng.standard_normal(16).astype("float32")
    w2 = rng.standard_normal((16, 4)).astype("float32")
    three = np.array([3], dtype="int64")
    one = np.array([1], dtype="int64")
    two_h = np.array([2], dtype="float16")
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["t1"]),
        helper.make_node("Add", ["t1", "B1"], ["t2"]),
        helper.make_node("Relu", ["t2"], ["t3"]),
        helper.make_node("MatMul", ["t3", "W2"], ["y"]),
        helper.make_node("ReduceSum", ["t3"], ["s"], keepdims=0),
        helper.make_node("Mul", ["ids", "three"], ["t4"]),
        helper.make_node("Add", ["t4", "one"], ["z"]),
        helper.make_node("Mul", ["h", "two_h"], ["h2"]),
    ]
    dt = {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64, "float16": TensorProto.FLOAT16}
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info(n, dt[d], list(s)) for n, s, d in INPUTS],
        [helper.make_tensor_value_info(n, dt[d], list(s)) for n, s, d in OUTPUTS],
        [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(b1, "B1"), numpy_helper.from_array(w2, "W2"),
         numpy_helper.from_array(three, "three"), numpy_helper.from_array(one, "one"),
         numpy_helper.from_array(two_h, "two_h")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _runtime_libs() -> list[Path]:
    import tvm.libinfo
    import tvm_ffi.libinfo

    return [Path(tvm.libinfo.find_libtvm_runtime()), Path(tvm_ffi.libinfo.find_libtvm_ffi())]


def _pattern_input(shape, dtype) -> np.ndarray:
    """The runner's documented deterministic inputs (i = flat C-order index)."""
    i = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64)
    if np.dtype(dtype).kind == "f":
        vals = ((i * 7919) % 1000) / 1000.0 - 0.5
    elif np.dtype(dtype).kind == "b":
        vals = (i * 7919) % 2
    else:
        vals = (i * 7919) % 7
    return vals.astype(dtype).reshape(shape)


@pytest.fixture(scope="module")
def pkg(tmp_path_factory):
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    root = tmp_path_factory.mktemp("pkg")
    mod = from_onnx(_onnx_model(), shape_dict={n: list(s) for n, s, _ in INPUTS},
                    dtype_dict={n: d for n, _, d in INPUTS})
    ex = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
    ex.export_library(str(root / "model.so"))
    (root / "runtime").mkdir()
    for lib in _runtime_libs():
        shutil.copy2(lib, root / "runtime" / lib.name)
    manifest = {
        "inputs": [{"name": n, "shape": list(s), "dtype": d} for n, s, d in INPUTS],
        "outputs": [{"name": n, "shape": list(s), "dtype": d} for n, s, d in OUTPUTS],
        "runtime": {"threads": 2},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    t0 = time.perf_counter()
    build_runner(root / "bin" / "ansor_runner", runtime_dir=root / "runtime")
    build_s = time.perf_counter() - t0
    vm = relax.VirtualMachine(ex, tvm.cpu())

    def reference(arrays):
        out = vm["main"](*[tvm.runtime.tensor(a) for a in arrays])
        return [o.numpy() for o in out]

    return {"root": root, "runner": root / "bin" / "ansor_runner", "reference": reference, "build_s": build_s}


def _run(pkg, *args, env=None):
    cmd = ENV_I + ([f"{k}={v}" for k, v in env.items()] if env else []) + [str(pkg["runner"]), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def _check_outputs(outdir: Path, expected: list[np.ndarray]):
    for k, ref in enumerate(expected):
        got = np.load(outdir / f"output_{k}.npy")
        assert got.dtype == ref.dtype and got.shape == ref.shape, (k, got.dtype, got.shape)
        np.testing.assert_allclose(got.astype("float64"), ref.astype("float64"), atol=1e-5, rtol=0)


def test_runner_sources_are_package_files():
    names = {p.name for p in runner_sources()}
    assert {"ansor_runner.cc", "npy.h", "build.py"} <= names
    assert all(p.parent == RUNNER_SOURCE_DIR for p in runner_sources())


def test_links_only_packaged_runtime(pkg):
    out = subprocess.run(["ldd", str(pkg["runner"])], capture_output=True, text=True, check=True).stdout
    assert "not found" not in out, out
    for lib in ("libtvm_runtime.so", "libtvm_ffi.so"):
        m = re.search(rf"{lib} => (\S+)", out)
        assert m and Path(m.group(1)).resolve() == (pkg["root"] / "runtime" / lib).resolve(), out


def test_inputs_from_files_match_vm(pkg, tmp_path):
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal((2, 8)).astype("float32"),
              np.array([5, -2, 1 << 40], dtype="int64"),
              rng.standard_normal(5).astype("float16")]
    files = []
    for (name, _, _), a in zip(INPUTS, arrays):
        np.save(tmp_path / f"{name}.npy", a)
        files += ["--input", tmp_path / f"{name}.npy"]
    outdir = tmp_path / "out" / "nested"
    r = _run(pkg, *files, "--output-dir", outdir, "--warmup", 2, "--repeat", 5)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("runner ") and "device=cpu" in lines[0]
    assert len(lines) == 1 + len(OUTPUTS) + 1, r.stdout
    assert re.fullmatch(r"output 0 name=y shape=\[2,4\] dtype=float32 min=\S+ max=\S+ mean=\S+", lines[1])
    assert re.fullmatch(r"output 1 name=s shape=\[\] dtype=float32 .*", lines[2])
    assert re.fullmatch(r"output 2 name=z shape=\[3\] dtype=int64 min=-5 max=3\.29853e\+12 mean=\S+", lines[3])
    assert re.fullmatch(r"latency_ms median=\d+\.\d+ min=\d+\.\d+ repeat=5", lines[-1])
    _check_outputs(outdir, pkg["reference"](arrays))
    assert np.load(outdir / "output_2.npy").tolist() == [16, -5, 3 * (1 << 40) + 1]


def test_generated_inputs_from_manifest(pkg, tmp_path):
    r = _run(pkg, "--output-dir", tmp_path, "--repeat", 3)
    assert r.returncode == 0, r.stderr
    arrays = [_pattern_input(s, d) for _, s, d in INPUTS]
    _check_outputs(tmp_path, pkg["reference"](arrays))
    # manifest runtime.threads (2) applies under an empty environment ...
    assert " threads=2 TVM_NUM_THREADS=2 " in r.stdout.splitlines()[0], r.stdout


def test_threads_option_and_env(pkg):
    r = _run(pkg, "--threads", 1, "--repeat", 1)
    assert r.returncode == 0, r.stderr
    assert " threads=1 TVM_NUM_THREADS=1 " in r.stdout.splitlines()[0]
    # ... but an explicit TVM_NUM_THREADS wins over the manifest
    r = _run(pkg, "--repeat", 1, env={"TVM_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert " threads=1 TVM_NUM_THREADS=1 " in r.stdout.splitlines()[0]


def test_pool_threads_are_not_pinned_unless_the_environment_says_so(pkg):
    r = _run(pkg, "--repeat", 1)
    assert r.returncode == 0 and r.stdout.splitlines()[0].endswith(" TVM_BIND_THREADS=0"), r.stdout + r.stderr
    r = _run(pkg, "--repeat", 1, env={"TVM_BIND_THREADS": "1"})
    assert r.returncode == 0 and r.stdout.splitlines()[0].endswith(" TVM_BIND_THREADS=1"), r.stdout + r.stderr


def test_python_loader_leaves_pool_threads_unpinned_unless_told(pkg):
    code = ("import os, sys; from ansor_build.package import loader; loader.load(sys.argv[1]); "
            "print(os.environ['TVM_BIND_THREADS'])")
    for env, expected in (({}, "0"), ({"TVM_BIND_THREADS": "1"}, "1")):
        clean = {k: v for k, v in os.environ.items() if k != "TVM_BIND_THREADS"}
        proc = subprocess.run([sys.executable, "-c", code, str(pkg["root"])], env={**clean, **env},
                              capture_output=True, text=True, timeout=120, check=True)
        assert proc.stdout.split()[-1] == expected, proc.stdout


def _assert_one_line_error(r, *fragments):
    assert r.returncode != 0
    err_lines = r.stderr.strip().splitlines()
    assert len(err_lines) == 1, r.stderr
    assert err_lines[0].startswith("ansor_runner: error: "), r.stderr
    for frag in fragments:
        assert frag in err_lines[0], r.stderr


def test_bad_inputs_give_one_line_errors(pkg, tmp_path):
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"this is not numpy\n")
    good = []
    for name, shape, dtype in INPUTS:
        np.save(tmp_path / f"{name}.npy", np.zeros(shape, dtype))
        good.append(tmp_path / f"{name}.npy")
    np.save(tmp_path / "wrong_shape.npy", np.zeros((3, 8), "float32"))
    np.save(tmp_path / "wrong_dtype.npy", np.zeros((2, 8), "int32"))

    _assert_one_line_error(_run(pkg, "--input", garbage, "--input", good[1], "--input", good[2]), "bad magic")
    _assert_one_line_error(_run(pkg, "--input", tmp_path / "missing.npy"), "missing.npy")
    _assert_one_line_error(_run(pkg, "--input", good[0]), "takes 3 input(s), got 1")
    _assert_one_line_error(_run(pkg, "--input", tmp_path / "wrong_shape.npy", "--input", good[1], "--input", good[2]),
                           "shape[0] mismatch")
    _assert_one_line_error(_run(pkg, "--input", tmp_path / "wrong_dtype.npy", "--input", good[1], "--input", good[2]),
                           "dtype float32")
    _assert_one_line_error(_run(pkg, "--model", tmp_path / "nope.so"), "model file not found")
    r = _run(pkg, "--bogus")
    _assert_one_line_error(r, "unknown argument")
    assert r.returncode == 2


def test_build_is_deterministic(pkg, tmp_path):
    other = tmp_path / "elsewhere" / "ansor_runner"
    build_runner(other, runtime_dir=pkg["root"] / "runtime")
    assert other.read_bytes() == pkg["runner"].read_bytes()
    assert not other.with_suffix(".log").exists()
    assert [p.name for p in other.parent.iterdir()] == ["ansor_runner"]  # no temp files left
    print(f"runner build took {pkg['build_s']:.1f} s")


def test_missing_compiler(tmp_path, pkg):
    with pytest.raises(InputError, match="not found on PATH"):
        build_runner(tmp_path / "r", cxx="no-such-g++-xyz", runtime_dir=pkg["root"] / "runtime")
    with pytest.raises(InputError, match="libtvm_runtime.so"):
        build_runner(tmp_path / "r", runtime_dir=tmp_path)


def test_compiler_failure_keeps_log(tmp_path, pkg):
    out = tmp_path / "bin" / "ansor_runner"
    with pytest.raises(ToolError) as info:
        build_runner(out, runtime_dir=pkg["root"] / "runtime", extra_flags=["-fno-such-flag-xyz"])
    err = info.value
    assert err.returncode not in (0, None)
    assert err.log_path == str(out.with_suffix(".log"))
    assert "no-such-flag-xyz" in Path(err.log_path).read_text()
    assert "\n" not in str(err)
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir()] == ["ansor_runner.log"]

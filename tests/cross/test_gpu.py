"""GPU packages: built on this GPU-less host with nvcc; they must carry compiled device code for their arch.

Running them needs an NVIDIA GPU: those tests are marked `gpu` and skip with the reason when there is none.
"""

from __future__ import annotations

import json

import pytest

from ansor_build import zoo
from ansor_build.check import check_package, compare, reference_outputs, sample_inputs
from ansor_build.package import layout
from ansor_build.package.elf import read_elf
from ansor_build.runner.run import run_runner
from cross_tools import DIFFS, cuda_gpu, cuobjdump, embedded_fatbins, list_device_code, require_tool
from helpers import PRESETS

pytestmark = pytest.mark.cross

GPU_PRESETS = sorted(p.stem for p in PRESETS.glob("*.yaml") if p.stem.startswith(("cuda-", "jetson-")))
HOST = {"jetson-orin": "aarch64"}


@pytest.fixture(autouse=True)
def _tools():
    require_tool("nvcc", "the CUDA 13 toolkit")


def _cuobjdump() -> str:
    tool = cuobjdump()
    if tool is None:
        pytest.skip("cuobjdump not found (pip install nvidia-cuda-cuobjdump: the test extra)")
    return tool


@pytest.mark.parametrize("preset", GPU_PRESETS)
def test_gpu_package_embeds_device_code_for_its_arch(cross_package, preset, tmp_path):
    package = cross_package(preset, "convnet")
    manifest = json.loads((package / layout.MANIFEST).read_text())
    arch = manifest["target"]["tvm"]["arch"]
    data = (package / "model.so").read_bytes()
    assert b'extern "C" __global__' not in data, "model.so still holds CUDA source (compiled on the device)"
    fatbins = embedded_fatbins(data)
    assert len(fatbins) == 1
    (tmp_path / "kernels.fatbin").write_bytes(fatbins[0])
    listed = list_device_code(_cuobjdump(), tmp_path / "kernels.fatbin")
    assert listed == {"elf": [arch], "ptx": [arch]}  # SASS for the arch + its PTX (forward compatibility)
    code = manifest["device_code"]
    assert code["sass"] == [arch] and code["ptx"] == [arch.replace("sm_", "compute_")]
    assert code["nvcc"].startswith("13.") and code["modules"][0]["size"] == len(fatbins[0])
    assert manifest["requirements"]["cuda_driver"] == "580" and "libcuda.so.1" in \
        manifest["requirements"]["system_libraries"]


@pytest.mark.parametrize("preset", ["cuda-sm_80", "jetson-orin"])
def test_gpu_package_carries_the_cuda_runtime_for_its_host_cpu(cross_package, preset):
    package = cross_package(preset, "resnet")
    manifest = json.loads((package / layout.MANIFEST).read_text())
    assert manifest["runtime"]["libs"] == ["runtime/libcudart.so.13", "runtime/libtvm_ffi.so",
                                           "runtime/libtvm_runtime.so", "runtime/libtvm_runtime_cuda.so"]
    machine = HOST.get(preset, "x86_64")
    for rel in ("model.so", "bin/ansor_runner", *manifest["runtime"]["libs"]):
        assert read_elf(package / rel).machine == machine, rel
    cuda_runtime = read_elf(package / "runtime/libtvm_runtime_cuda.so")
    assert {"libcudart.so.13", "libcuda.so.1"} <= set(cuda_runtime.needed)
    assert "NVIDIA driver >= 580" in (package / layout.README).read_text()


def test_ptx_can_be_left_out(zoo_dir, tmp_path):
    from ansor_build.build import build_package

    target = tmp_path / "sass-only.yaml"
    target.write_text(f"extends: {PRESETS / 'cuda-sm_86.yaml'}\nruntime: {{ptx: false}}\n")
    package = build_package(zoo_dir / "mlp.onnx", target, tmp_path / "pkg").package
    (tmp_path / "k.fatbin").write_bytes(embedded_fatbins((package / "model.so").read_bytes())[0])
    assert list_device_code(_cuobjdump(), tmp_path / "k.fatbin") == {"elf": ["sm_86"], "ptx": []}


def test_two_gpu_builds_are_byte_identical(zoo_dir, tmp_path):
    from ansor_build.build import build_package

    digests = []
    for run in ("a", "b"):
        package = build_package(zoo_dir / "mlp.onnx", PRESETS / "cuda-sm_75.yaml", tmp_path / run / "pkg").package
        digests.append({str(p.relative_to(package)): p.read_bytes() for p in package.rglob("*") if p.is_file()})
    assert digests[0] == digests[1]


def _gpu_preset() -> str:
    arch, why = cuda_gpu()
    if arch is None:
        pytest.skip(f"needs an NVIDIA GPU: {why}")
    preset = f"cuda-{arch}"
    if not (PRESETS / f"{preset}.yaml").is_file():
        pytest.skip(f"no preset for this GPU's arch {arch} (presets: {', '.join(GPU_PRESETS)})")
    return preset


@pytest.mark.gpu
@pytest.mark.parametrize("name", zoo.NAMES)
def test_gpu_package_runs_and_matches_onnxruntime(cross_package, packages, zoo_dir, name):
    preset = _gpu_preset()
    package = cross_package(preset, name)
    result = check_package(package, zoo_dir / f"{name}.onnx")  # Python loader, fresh process, on the GPU
    assert result.ok, result.line()
    manifest = json.loads((package / layout.MANIFEST).read_text())
    arrays = sample_inputs(manifest)
    on_gpu, _ = run_runner(package, arrays)  # the C++ runner picks the device from the manifest
    reference, _ = reference_outputs(zoo_dir / f"{name}.onnx", manifest, arrays)
    vs_ort, _, ok = compare(on_gpu, reference)
    assert ok, f"GPU runner vs onnxruntime: max abs diff {vs_ort:.2e}"
    on_cpu, _ = run_runner(packages[name], arrays)
    vs_x86, _, same = compare(on_gpu, on_cpu)
    assert same, f"GPU vs x86: max abs diff {vs_x86:.2e}"
    DIFFS[f"{name}: {preset} vs onnxruntime"] = vs_ort
    DIFFS[f"{name}: {preset} vs x86"] = vs_x86


def test_nvcc_runs_as_its_own_path(zoo_dir, tmp_path):
    """nvcc finds its toolkit (headers, nvcc.profile) from the path it is run as: run through a link elsewhere, a
    standard /usr/local/cuda install fails with "cuda_runtime.h: No such file or directory". This nvcc fails the same
    way unless it runs as itself."""
    import shutil

    from ansor_build.build import build_package

    real = shutil.which("nvcc")
    bin_dir = tmp_path / "toolkit" / "bin"
    bin_dir.mkdir(parents=True)
    nvcc = bin_dir / "nvcc"
    nvcc.write_text(f'#!/bin/sh\n[ "$(dirname "$0")" = "{bin_dir}" ] || '
                    '{ echo "<command-line>: fatal error: cuda_runtime.h: No such file or directory" >&2; exit 1; }\n'
                    f'exec "{real}" "$@"\n')
    nvcc.chmod(0o755)
    target = tmp_path / "own-nvcc.yaml"
    target.write_text(f"extends: {PRESETS / 'cuda-sm_86.yaml'}\ntoolchain: {{nvcc: {nvcc}}}\n")
    package = build_package(zoo_dir / "mlp.onnx", target, tmp_path / "pkg").package
    assert len(embedded_fatbins((package / "model.so").read_bytes())) == 1


@pytest.mark.gpu
def test_package_for_another_gpu_fails_with_what_to_do(zoo_dir, tmp_path):
    """A package without code this GPU can run (SASS of another major, no PTX) stops before its first kernel, in
    the C++ runner and the Python loader alike, naming this GPU's arch and the fix."""
    import subprocess
    import sys

    from ansor_build.build import build_package
    from ansor_build.errors import ToolError

    here = _gpu_preset()[len("cuda-"):]
    other = "sm_75" if not here.startswith("sm_7") else "sm_90"
    target = tmp_path / "other.yaml"
    target.write_text(f"extends: {PRESETS / 'cuda-sm_80.yaml'}\ntvm: {{arch: {other}}}\nruntime: {{ptx: false}}\n")
    package = build_package(zoo_dir / "mlp.onnx", target, tmp_path / "pkg").package
    with pytest.raises(ToolError) as err:
        run_runner(package, sample_inputs(json.loads((package / layout.MANIFEST).read_text())))
    assert f"this GPU is {here} and the package's device code cannot run on it (SASS for {other}, no PTX)" in \
        str(err.value)
    code = "import sys; from ansor_build.package import loader; loader.load(sys.argv[1])"
    proc = subprocess.run([sys.executable, "-c", code, str(package)], capture_output=True, text=True)
    assert proc.returncode != 0 and f"this GPU is {here}" in proc.stderr.strip().splitlines()[-1]

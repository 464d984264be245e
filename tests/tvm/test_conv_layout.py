"""optimize.conv_layout: a CPU target's convolutions run channels-last (NHWC) unless the target keeps NCHW."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ansor_build.build import build_package, prepare
from ansor_build.target import load_target
from helpers import HOST_TARGET

pytestmark = pytest.mark.tvm


def _nchw_target(tmp_path):
    path = tmp_path / "nchw.yaml"
    path.write_text(f"extends: {HOST_TARGET}\nname: host-nchw\noptimize: {{conv_layout: NCHW}}\n")
    return path


def _conv_buffers(fused) -> list[list[int]]:
    """The shape of the first parameter (the activation) of every fused conv subgraph, read from its TVMScript."""
    shapes = []
    for gvar, func in fused.functions_items():
        if "conv2d" in gvar.name_hint:
            first = re.search(r"def main\(\w+: T\.Buffer\(\((.*?)\), \"float32\"\)", func.script())
            shapes.append([int(d) for d in re.findall(r"T\.int64\((\d+)\)", first.group(1))])
    return shapes


def test_mobilenet_runs_every_conv_channels_last_with_two_activation_transposes(zoo_dir):
    from ansor_build import backend
    from ansor_build.backend import frontend, nhwc
    from ansor_build.model import load_model

    backend.import_tvm()
    import tvm
    from tvm import relax

    target = load_target(HOST_TARGET)
    assert target.conv_layout == "NHWC"
    tvm_target = backend.make_target(target.tvm)
    mod = frontend.import_onnx(load_model(zoo_dir / "mobilenet.onnx"))
    assert re.search(r"R\.call_tir\(maximum\d*, ", mod["main"].script())  # the importer's Clip (ReLU6)
    with tvm_target:
        mod = tvm.transform.Sequential([relax.transform.FoldBatchnormToConv2D(),
                                        relax.transform.DecomposeOpsForInference(),
                                        *nhwc.passes(tvm_target, "NHWC")])(mod)
    script = mod["main"].script()
    convs = re.findall(r"R\.nn\.conv2d\(.*", script)
    assert len(convs) == 8 and all('data_layout="NHWC"' in c and 'kernel_layout="OHWI"' in c for c in convs)
    assert "call_tir" not in script  # every ReLU6 bound became R.maximum / R.minimum, which follow the layout
    assert script.count("R.maximum(") == script.count("R.minimum(") == 7
    # the input goes channels-last once, the pooled features come back once; all other transposes are of weights
    activation_transposes = [line for line in script.splitlines()
                             if "R.permute_dims(" in line and "metadata[" not in line]
    assert len(activation_transposes) == 2, activation_transposes


def test_nchw_and_nhwc_give_different_tasks_and_the_same_outputs(zoo_dir, tmp_path, packages):
    """The layout is in every conv task's TIR, so records of one layout never apply to the other."""
    from ansor_build.package import loader

    nchw = prepare(zoo_dir / "resnet.onnx", load_target(_nchw_target(tmp_path)), tuned=True)
    nhwc = prepare(zoo_dir / "resnet.onnx", load_target(HOST_TARGET), tuned=True)
    conv_keys = {layout: {t.key for t in p.tasks if "conv2d" in t.name} for layout, p in (("NCHW", nchw),
                                                                                        ("NHWC", nhwc))}
    assert len(conv_keys["NCHW"]) == len(conv_keys["NHWC"]) == 6 and not conv_keys["NCHW"] & conv_keys["NHWC"]
    # the stem's input: [1, 3, 32, 32] as ONNX has it, [1, 32, 32, 3] channels-last
    assert [1, 3, 32, 32] in _conv_buffers(nchw.fused) and [1, 32, 32, 3] not in _conv_buffers(nchw.fused)
    assert [1, 32, 32, 3] in _conv_buffers(nhwc.fused)

    package = build_package(zoo_dir / "resnet.onnx", _nchw_target(tmp_path), tmp_path / "resnet-nchw").package
    ours, theirs = loader.load(package), loader.load(packages["resnet"])
    arrays = ours.default_inputs()
    np.testing.assert_allclose(ours(*arrays)[0], theirs(*arrays)[0], rtol=1e-5, atol=1e-5)


def test_clip_rewrite_leaves_other_scalar_calls_alone():
    """Only the importer's maximum / minimum with a constant scalar bound are rewritten, never another call_tir."""
    from ansor_build import backend
    from ansor_build.backend import nhwc

    backend.import_tvm()
    from tvm import relax, topi

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 4, 2, 2), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            added = bb.emit_te(topi.add, x, relax.const(1.0, "float32"))
            clipped = bb.emit_te(topi.maximum, added, relax.const(0.0, "float32"))
            out = bb.emit_output(clipped)
        bb.emit_func_output(out)
    script = nhwc.clip_bounds_as_ops()(bb.get())["main"].script()
    assert "R.maximum(" in script and script.count("R.call_tir(") == 1 and "R.call_tir(add, " in script

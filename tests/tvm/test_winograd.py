"""Winograd F(4x4, 3x3) convolutions on CPU targets: the algebra, the kernel (scheduled and not) against a direct
convolution, which convolutions qualify, the build's tasks, and MetaSchedule's design space of the kernel."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ansor_build.build import build_package, prepare
from ansor_build.target import load_target
from helpers import HOST_TARGET

pytestmark = pytest.mark.tvm


def _direct_conv(data, weight, bias, padding):
    """NHWC x OHWI (3x3, stride 1) + bias, ReLU, in float64."""
    pad_t, pad_l, pad_b, pad_r = padding
    x = np.pad(data.astype(np.float64), ((0, 0), (pad_t, pad_b), (pad_l, pad_r), (0, 0)))
    oh, ow = x.shape[1] - 2, x.shape[2] - 2
    out = np.zeros((data.shape[0], oh, ow, weight.shape[0]))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nhwc,kc->nhwk", x[:, i:i + oh, j:j + ow, :], weight[:, i, j, :].astype(np.float64))
    return np.maximum(out + bias, 0.0)


def test_the_transform_matrices_compute_a_3x3_correlation_of_a_6x6_tile():
    from ansor_build.backend import winograd

    rng = np.random.default_rng(1)
    a, b, g = winograd.matrices()
    assert a.shape == (6, 4) and b.shape == (6, 6) and g.shape == (6, 3)
    for _ in range(5):
        tile, kernel = rng.standard_normal((6, 6)), rng.standard_normal((3, 3))
        winograd_out = a.T @ ((g @ kernel @ g.T) * (b.T @ tile @ b)) @ a
        direct = np.array([[np.sum(tile[i:i + 3, j:j + 3] * kernel) for j in range(4)] for i in range(4)])
        np.testing.assert_allclose(winograd_out, direct, rtol=1e-9, atol=1e-9)


def test_the_weight_transform_is_g_g_gt_per_channel_pair():
    from ansor_build.backend import winograd

    rng = np.random.default_rng(2)
    weight = rng.standard_normal((5, 3, 3, 7)).astype("float32")  # OHWI
    u = winograd.transform_weight(weight)
    _, _, g = winograd.matrices()
    assert u.shape == (6, 6, 7, 5) and u.dtype == np.float32
    np.testing.assert_allclose(u[:, :, 3, 2], g @ weight[2, :, :, 3].astype(np.float64) @ g.T, rtol=1e-6, atol=1e-6)


def _kernel_with_epilogue(n, h, w, c, k, padding):
    """The Winograd PrimFunc followed by bias + ReLU as Relax fuses them, as one IRModule "main"."""
    import tvm
    from tvm import relax

    from ansor_build.backend import winograd

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType([n, h, w, c], "float32"))
    u = relax.Var("u", relax.TensorType([6, 6, c, k], "float32"))
    bias = relax.Var("bias", relax.TensorType([k], "float32"))
    with bb.function("main", [x, u, bias]):
        with bb.dataflow():
            gv = bb.add_func(winograd.prim_func(n, h, w, c, k, padding), "conv2d_winograd")
            oh, ow = h + padding[0] + padding[2] - 2, w + padding[1] + padding[3] - 2
            conv = bb.emit(relax.call_tir(gv, relax.Tuple([x, u]), relax.TensorType([n, oh, ow, k], "float32")))
            out = bb.emit_output(relax.op.nn.relu(relax.op.add(conv, bias)))
        bb.emit_func_output(out)
    mod = bb.get()
    seq = tvm.transform.Sequential([relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
                                    relax.transform.FuseOps(), relax.transform.FuseTIR()])
    fused = seq(mod)
    (name,) = [g.name_hint for g, f in fused.functions_items() if g.name_hint.startswith("fused_conv2d_winograd")]
    return tvm.IRModule({"main": fused[name].with_attr("global_symbol", "main")})


@pytest.mark.parametrize("n,h,w,c,k,padding,points", [
    (1, 32, 32, 16, 16, (1, 1, 1, 1), "default"),
    (2, 16, 8, 24, 40, (1, 1, 1, 1), "default"),  # batch 2, channels not a multiple of the 16 lanes, K != C
    (1, 10, 18, 8, 8, (0, 0, 0, 0), "all"),       # no padding: 8x16 output; every point of the space
    (1, 16, 16, 32, 32, (1, 1, 1, 1), "none"),    # unscheduled: the TIR as written is correct too
])
def test_the_kernel_matches_a_direct_convolution(n, h, w, c, k, padding, points):
    from ansor_build import backend
    from ansor_build.backend import winograd, winograd_schedule

    tvm = backend.import_tvm()
    from tvm import s_tir

    base = _kernel_with_epilogue(n, h, w, c, k, padding)
    assert winograd_schedule.is_winograd(base["main"])
    modules = {"none": [base]}.get(points)
    if modules is None:
        chosen = winograd_schedule.points(base["main"]) if points == "all" else [winograd_schedule.DEFAULT]
        assert points != "all" or len(chosen) == 3 * 4 * 2  # 4 tiles a row: 1, 2, 4; 8 channels: 1, 2, 4, 8
        modules = []
        for point in chosen:
            sch = s_tir.Schedule(base)
            winograd_schedule.schedule(sch, point)
            modules.append(sch.mod)
    rng = np.random.default_rng(3)
    data = rng.standard_normal((n, h, w, c)).astype("float32")
    weight = (rng.standard_normal((k, 3, 3, c)) * 0.2).astype("float32")
    bias = rng.standard_normal(k).astype("float32")
    expected = _direct_conv(data, weight, bias, padding)
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(a, dev) for a in (data, winograd.transform_weight(weight), bias)]
    for mod in modules:
        lib = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm", "mcpu": "x86-64-v3"}))
        out = tvm.runtime.tensor(np.zeros(expected.shape, "float32"), dev)
        lib(*args, out)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-4)


def _convs_after_rewrite(model_path, target):
    """(Winograd call count, remaining conv2d count) in a model's graph after the NHWC and Winograd passes."""
    from ansor_build import backend
    from ansor_build.backend import frontend, nhwc, winograd
    from ansor_build.model import load_model

    tvm = backend.import_tvm()
    from tvm import relax

    tvm_target = backend.make_target(target.tvm)
    mod = frontend.import_onnx(load_model(model_path))
    with tvm_target:
        mod = tvm.transform.Sequential([relax.transform.FoldBatchnormToConv2D(),
                                        relax.transform.DecomposeOpsForInference(),
                                        *nhwc.passes(tvm_target, "NHWC"), *winograd.passes(tvm_target, True)])(mod)
    script = mod["main"].script()
    return len(re.findall(r"R\.call_tir\((cls\.)?conv2d_winograd", script)), script.count("R.nn.conv2d(")


def test_only_3x3_stride_1_convolutions_with_enough_channels_and_pixels_qualify(tmp_path):
    """ResNet-style: the stem (3 input channels), the stride-2 conv and the 1x1 projection stay direct; a conv on a
    6x6 map or with a non-constant weight too (built as small ONNX graphs)."""
    import onnx
    from onnx import TensorProto, helper

    from ansor_build.zoo import write_model

    write_model("resnet", tmp_path / "resnet.onnx")
    target = load_target(HOST_TARGET)
    assert _convs_after_rewrite(tmp_path / "resnet.onnx", target) == (3, 3)

    def conv_model(name, size, weight_as_input=False):
        rng = np.random.default_rng(4)
        w = helper.make_tensor("w", TensorProto.FLOAT, [8, 8, 3, 3], rng.standard_normal(8 * 8 * 9).tolist())
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, size, size])]
        if weight_as_input:
            inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [8, 8, 3, 3]))
        node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
        graph = helper.make_graph([node], name, inputs,
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, size, size])],
                                  initializer=[] if weight_as_input else [w])
        path = tmp_path / f"{name}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
        return path

    assert _convs_after_rewrite(conv_model("eight", 8), target) == (1, 0)
    assert _convs_after_rewrite(conv_model("six", 6), target) == (0, 1)
    assert _convs_after_rewrite(conv_model("runtime_weight", 8, weight_as_input=True), target) == (0, 1)


def test_the_target_switch_keeps_direct_convolutions_and_other_task_keys(zoo_dir, tmp_path, packages):
    from ansor_build.package import loader

    direct_target = tmp_path / "direct.yaml"
    direct_target.write_text(f"extends: {HOST_TARGET}\nname: host-direct\noptimize: {{winograd: false}}\n")
    assert load_target(HOST_TARGET).winograd and not load_target(direct_target).winograd
    with_w = prepare(zoo_dir / "resnet.onnx", load_target(HOST_TARGET), tuned=True)
    without = prepare(zoo_dir / "resnet.onnx", load_target(direct_target), tuned=True)
    assert sorted(t.name for t in with_w.tasks if "winograd" in t.name) == [
        "fused_conv2d_winograd1_add2_add3_relu11", "fused_conv2d_winograd_add_add1_relu1",
        "fused_conv2d_winograd_add_relu1"]
    assert not [t for t in without.tasks if "winograd" in t.name]
    assert len(with_w.tasks) == len(without.tasks)
    assert not {t.key for t in with_w.tasks if "winograd" in t.name} & {t.key for t in without.tasks}

    package = build_package(zoo_dir / "resnet.onnx", direct_target, tmp_path / "resnet-direct").package
    ours, theirs = loader.load(package), loader.load(packages["resnet"])
    arrays = ours.default_inputs()
    np.testing.assert_allclose(theirs(*arrays)[0], ours(*arrays)[0], rtol=1e-5, atol=1e-5)


def test_tuning_measures_each_point_of_the_kernels_space_once(zoo_dir):
    """A Winograd task's space: every point a distinct, valid schedule, DEFAULT first; the search strategy hands
    them out a batch at a time up to the trial budget, then ends the task (None)."""
    from ansor_build.backend import winograd_schedule
    from tvm import s_tir

    prepared = prepare(zoo_dir / "resnet.onnx", load_target(HOST_TARGET), tuned=True)
    (task,) = [mt for t, mt in zip(prepared.tasks, prepared.ms_tasks) if t.name == "fused_conv2d_winograd_add_relu1"]
    func = task.dispatched[0]["main"]
    points = winograd_schedule.points(func)
    # 8 tiles per row: 1, 2, 4, 8 per block; 16 input channels: runs of 1, 2, 4, 8, 16; two loop orders
    assert len(points) == len(set(points)) == 40 and points[0] == winograd_schedule.DEFAULT
    spaces = winograd_schedule.space(s_tir.Schedule(task.dispatched[0]))
    assert len({str(s.mod["main"].script()) for s in spaces}) == 40

    def batches(database=None) -> list[int]:
        from tvm.s_tir import meta_schedule as ms

        strategy = winograd_schedule.search_strategy()
        ms.TuneContext(mod=task.dispatched[0], target=task.target, space_generator="post-order-apply",
                       search_strategy=strategy)
        strategy.pre_tuning(max_trials=30, num_trials_per_iter=16, design_spaces=spaces, database=database)
        sizes = []
        while (batch := strategy.generate_measure_candidates()) is not None:
            sizes.append(len(batch))
        return sizes

    assert batches() == [16, 14]
    # an interrupted run measured 30 of the 40: the rest only
    from tvm.s_tir import meta_schedule as ms

    database = ms.database.MemoryDatabase()
    workload = database.commit_workload(task.dispatched[0])
    for sch in spaces[:30]:
        database.commit_tuning_record(ms.database.TuningRecord(sch.trace, workload, [1e-5], task.target))
    assert batches(database) == [10]

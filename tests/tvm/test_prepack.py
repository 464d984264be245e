"""Weight prepacking on CPU: schedules that rewrite a constant weight's layout get it packed at build time.

The records here are real MetaSchedule schedules (each conv task's design space with the CPU postprocessors,
`RewriteLayout` among them) without measuring them: what matters is that they rewrite weight layouts.
"""

from __future__ import annotations

import pytest

from ansor_build.build import build_package, prepare
from ansor_build.check import check_package
from ansor_build.target import load_target
from ansor_build.tuning.driver import write_records_file
from helpers import HOST_TARGET
from prepack_records import is_direct_conv, layout_rewriting_records

pytestmark = pytest.mark.tvm


@pytest.fixture(scope="module")
def convnet_prepared(zoo_dir):
    return prepare(zoo_dir / "convnet.onnx", load_target(HOST_TARGET), tuned=True)


def test_conv_tasks_mark_constant_weights_layout_free(convnet_prepared):
    for task, ms_task in zip(convnet_prepared.tasks, convnet_prepared.ms_tasks):
        free = ms_task.dispatched[0]["main"].attrs.get("layout_free_buffers")
        if "conv2d" in task.name:
            assert free is not None and [int(i) for i in free] == [1, 2], task.name  # weight and bias, not the data


def test_applied_layout_rewrites_are_folded_into_the_constants(convnet_prepared):
    from tvm import relax

    from ansor_build.backend import prepack
    from ansor_build.backend.records import memory_database

    import tvm

    applied = layout_rewriting_records(convnet_prepared)
    target = convnet_prepared.tvm_target
    with target, memory_database(applied, target):
        mod = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(convnet_prepared.fused)
        packed = tvm.transform.Sequential(prepack.after_applying(target))(mod)
    names = {gv.name_hint for gv in packed.functions}
    assert sum(name.endswith("_prepacked") for name in names) == len(applied)
    assert not any("weight_prepack" in name for name in names)  # folded at build time, then removed
    calls = [str(call) for call in str(packed["main"]).splitlines() if "R.call_tir(" in call]
    prepacked_calls = [call for call in calls if "_prepacked," in call]
    assert len(prepacked_calls) == len(applied)
    assert all('metadata["ir.GenericConst"]' in call for call in prepacked_calls)  # packed weights are constants


@pytest.mark.parametrize("name", ["convnet", "resnet"])
def test_prepacked_package_matches_onnxruntime(zoo_dir, tmp_path, name):
    target = load_target(HOST_TARGET)
    prepared = prepare(zoo_dir / f"{name}.onnx", target, tuned=True)
    records = tmp_path / "records.json"
    write_records_file(records, target.tuned_tvm(), [t.key for t in prepared.tasks],
                       layout_rewriting_records(prepared))
    result = build_package(zoo_dir / f"{name}.onnx", HOST_TARGET, tmp_path / name, records_file=records)
    assert result.manifest["tuning"]["records"] == sum(is_direct_conv(t.name) for t in prepared.tasks)
    check = check_package(result.package, zoo_dir / f"{name}.onnx")
    assert check.ok, check.line()

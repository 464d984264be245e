"""Real layout-rewriting records for tests: each direct conv task's first MetaSchedule design space with the target's
postprocessors (`RewriteLayout` among them), not measured: what matters is that they rewrite weight layouts.
Winograd conv tasks have their own schedule and no layout rewrite: their weight is built in the layout they read."""

from __future__ import annotations

import json


def is_direct_conv(task_name: str) -> bool:
    return "conv2d" in task_name and "winograd" not in task_name


def layout_rewriting_records(prepared) -> dict:
    """key -> applied-record entry for every conv task, from its first design space after all postprocessors."""
    from ansor_build.backend.records import import_intrinsics, intrinsics_family, record_from_measurement, \
        workload_json

    import_intrinsics(intrinsics_family(prepared.tvm_target))
    from tvm.s_tir import meta_schedule as ms

    applied = {}
    for task, ms_task in zip(prepared.tasks, prepared.ms_tasks):
        if not is_direct_conv(task.name):
            continue
        mod = ms_task.dispatched[0]
        ctx = ms.TuneContext(mod=mod, target=ms_task.target, space_generator="post-order-apply",
                             search_strategy="replay-trace", num_threads=1)
        sch = ctx.space_generator.generate_design_space(ctx.mod)[0]
        assert all(postproc.apply(sch) for postproc in ctx.space_generator.postprocs)
        assert any(inst.kind.name == "TransformLayout" for inst in sch.trace.insts), task.name
        record = record_from_measurement(sch.trace, ms.database.Workload(mod), [1e-5], ms_task.target,
                                         ms.arg_info.ArgInfo.from_prim_func(mod["main"]))
        # through JSON, as records travel in the store (the layout maps are TVM JSON graph strings)
        applied[task.key] = {"name": task.name, "workload": workload_json(mod), "record": json.loads(json.dumps(record))}
    assert applied
    return applied

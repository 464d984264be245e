"""GPU targets give MetaSchedule what its CUDA rules need: a search space and candidates for every task, here
without a GPU (measuring them needs one: tests/cross/test_gpu.py, and the GPU tuning row of benchmarks/tuning.py)."""

from __future__ import annotations

import pytest

from ansor_build.build import prepare
from ansor_build.target import load_target
from helpers import PRESETS

pytestmark = pytest.mark.tvm


def test_cuda_targets_name_the_block_limits_metaschedule_needs(tmp_path):
    tuned = load_target(PRESETS / "cuda-sm_80.yaml").tuned_tvm()
    assert tuned["max_threads_per_block"] == 1024 and tuned["max_shared_memory_per_block"] == 49152
    own = tmp_path / "small.yaml"
    own.write_text(f"extends: {PRESETS / 'cuda-sm_80.yaml'}\n"
                   "tvm: {max_num_threads: 512, max_shared_memory_per_block: 32768}\n")
    tuned = load_target(own).tuned_tvm()
    assert tuned["max_threads_per_block"] == 512 and tuned["max_shared_memory_per_block"] == 32768


def test_every_gpu_task_has_a_search_space_and_candidates(zoo_dir):
    """The mlp's matmuls: thread binding, cross-thread reduction and the shared-memory check all run (before the
    block limits were added, initializing the search failed: "missing attribute `max_threads_per_block`")."""
    prepared = prepare(zoo_dir / "mlp.onnx", load_target(PRESETS / "cuda-sm_90.yaml"), tuned=True)
    from ansor_build.backend.records import import_intrinsics, intrinsics_family

    import_intrinsics(intrinsics_family(prepared.tvm_target))  # as tuning does: sm_90's tensor-core rule needs them
    from tvm.s_tir import meta_schedule as ms


    for task in prepared.ms_tasks:
        context = ms.TuneContext(mod=task.dispatched[0], target=task.target, space_generator="post-order-apply",
                                 search_strategy=ms.search_strategy.EvolutionarySearch(population_size=128,
                                                                                      init_min_unmeasured=32),
                                 task_name=task.task_name, num_threads=2, rand_state=1)
        spaces = context.generate_design_space()
        assert spaces, task.task_name
        context.pre_tuning(max_trials=4, num_trials_per_iter=4, design_spaces=spaces,
                           database=ms.database.MemoryDatabase(), cost_model=ms.cost_model.RandomModel())
        candidates = context.search_strategy.generate_measure_candidates()
        assert candidates, f"{task.task_name}: no candidates (postprocessors rejected every schedule)"
        for candidate in candidates:  # every candidate binds its loops to GPU threads
            assert "threadIdx.x" in candidate.sch.mod.script(), task.task_name

"""The tuning builder: MetaSchedule's LocalBuilder, with worker processes that live across batches.

LocalBuilder starts a fresh pool of worker processes for every batch, and each worker imports TVM and the target's
tensor intrinsics (~2 s). On a 2-core machine that was 2 of the 3 s a batch of 8 candidates took to build. This
builder keeps its pool, and replaces it every RECYCLE_BATCHES batches (LocalBuilder restarts it because long-lived
workers leak memory) and after a build that timed out (its worker was killed). Builds run exactly as LocalBuilder's
(its worker function), so candidates are compiled and exported the same way.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

RECYCLE_BATCHES = 25  # batches built by one pool of workers before it is replaced
TIMEOUT_S = 30.0  # one candidate's build (LocalBuilder's default)


def pooled_builder(max_workers: int, initializer, f_export, timeout_sec: float = TIMEOUT_S):
    """A MetaSchedule Builder (a PyBuilder) with a persistent worker pool; `close()` ends its workers."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.builder.local_builder import _serialize_params, _worker_func
    from tvm.support.popen_pool import PopenPoolExecutor, StatusKind

    @derived_object
    class PooledBuilder(PyBuilder):
        def __init__(self):
            super().__init__()
            self.pool = None
            self.batches = 0

        def build(self, build_inputs):
            if self.pool is None:
                self.pool = PopenPoolExecutor(max_workers=max_workers, timeout=timeout_sec, initializer=initializer)
            jobs = [(None, f_export, item.mod, item.target, _serialize_params(item.params)) for item in build_inputs]
            results, timed_out = [], False
            for done in self.pool.map_with_error_catching(lambda job: _worker_func(*job), jobs):
                if done.status == StatusKind.COMPLETE:
                    results.append(BuilderResult(done.value, None))
                elif done.status == StatusKind.TIMEOUT:
                    timed_out = True
                    results.append(BuilderResult(None, f"LocalBuilder: Timeout, killed after {timeout_sec} seconds"))
                else:
                    results.append(BuilderResult(None, f"LocalBuilder: An exception occurred\n{done.value}"))
            self.batches += 1
            if timed_out or self.batches >= RECYCLE_BATCHES:
                self.close()
            return results

        def close(self):
            if self.pool is not None:
                pool, self.pool, self.batches = self.pool, None, 0
                pool.shutdown()

    return PooledBuilder()

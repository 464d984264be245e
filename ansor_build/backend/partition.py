"""Fusing a Relax module into subgraphs and extracting them as tuning tasks keyed by structural hash."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from ..errors import AnsorError, InputError
from . import import_tvm, nhwc, prepack, winograd

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """One fused subgraph to schedule: its stable key, TVM's name for it, and how often the model runs it."""

    key: str  # structural hash of the task's PrimFunc (names of buffers do not change it)
    name: str
    weight: int
    flops: float | None = None

    def as_dict(self) -> dict:
        return {"key": self.key, "name": self.name, "weight": self.weight, "flops": self.flops}


def fuse(mod, target, fast_math: bool = True, conv_layout: str = "NCHW", winograd_convs: bool = False):
    """Lower operators to TIR and fuse them into subgraphs (what gets tuned and compiled).

    `fast_math`: exp, erf, tanh and softmax become TVM's polynomial approximations: vectorizable, and their time
    does not depend on the data (libm's erff and expf take different paths for different magnitudes, so the random
    inputs tuning measures with need not cost what real inputs do).
    `conv_layout`: "NHWC" runs a CPU target's convolutions channels-last (`nhwc`); "NCHW" keeps ONNX's layout.
    `winograd_convs`: a CPU target's NHWC 3x3 stride-1 convolutions run as F(4x4, 3x3) (`winograd`).
    A model whose NHWC rewrite fails is fused NCHW (without Winograd), with a warning.
    """
    if conv_layout != "NCHW" and nhwc.passes(target, conv_layout):
        try:
            return _fuse(mod, target, fast_math, conv_layout, winograd_convs)
        except InputError as err:
            # The layout rewrite is an optimization: a model it cannot handle (TVM 0.27's ConvertLayout fails on
            # some operators: Max/Min of two tensors, conv2d_transpose, some concatenations) is still compiled,
            # with ONNX's own layout, rather than refused.
            log.warning("conv layout %s failed for this model (%s); its convolutions run NCHW instead (set "
                        "optimize: {conv_layout: NCHW} in the target to skip the attempt)", conv_layout, err)
    return _fuse(mod, target, fast_math, "NCHW", False)


def _fuse(mod, target, fast_math: bool, conv_layout: str, winograd_convs: bool):
    tvm = import_tvm()
    from tvm import relax
    from tvm.relax import pipeline

    # The backends' legalize_passes() also apply default GPU schedules (dlight) after fusing; tuning needs the
    # unscheduled subgraphs, so the fusing passes are listed here and scheduling happens in codegen.
    transform = relax.transform
    with target:
        passes = [*pipeline.library_dispatch_passes(target), transform.FoldBatchnormToConv2D(),
                  transform.DecomposeOpsForInference(), *([transform.FastMathTransform()] if fast_math else []),
                  # Without these two, batch_norm's leftover tuple stops FuseOps (resnet: 12 tasks instead of 9).
                  transform.CanonicalizeBindings(), transform.DeadCodeElimination(),
                  *nhwc.passes(target, conv_layout),
                  *winograd.passes(target, winograd_convs and conv_layout == "NHWC"),
                  transform.LegalizeOps(), transform.AnnotateTIROpPattern(),
                  transform.FoldConstant(), transform.FuseOps(), transform.FuseTIR(), *prepack.before_tuning(target)]
        with tvm_errors("fuse the model's operators"):
            return tvm.transform.Sequential(passes)(mod)


def extract_tasks(fused, target) -> tuple[list[Task], list]:
    """The tuning tasks of a fused module, sorted by key; also TVM's task objects in the same order."""
    import_tvm()
    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms

    with tvm_errors("extract the model's tuning tasks"):
        ms_tasks = ms.relax_integration.extract_tasks(fused, target)
    pairs = []
    for task in ms_tasks:
        key = f"{tvm_ffi.structural_hash(task.dispatched[0]) & 0xFFFFFFFFFFFFFFFF:016x}"
        flops = _flops(task.dispatched[0])
        pairs.append((Task(key=key, name=str(task.task_name), weight=int(task.weight), flops=flops), task))
    pairs.sort(key=lambda pair: (pair[0].key, pair[0].name))
    return [p[0] for p in pairs], [p[1] for p in pairs]


@contextlib.contextmanager
def tvm_errors(what: str):
    """An exception TVM raises in the block (the model's operators, shapes or types it cannot lower; or a bug of
    TVM or of ansor-build's passes) becomes one InputError line; `-v` logs the traceback."""
    from .frontend import relax_op, tvm_message

    try:
        yield
    except AnsorError:
        raise
    except Exception as err:  # noqa: BLE001 - TVM raises many types; the message is what helps
        log.debug("TVM could not %s", what, exc_info=True)
        op = relax_op(err)
        where = f" (lowering {op})" if op else ""
        raise InputError(f"TVM could not {what}{where}: {tvm_message(err)} (a model TVM cannot compile, or a bug: "
                         f"rerun as `ansor-build -v ...` for the traceback)") from err


def _flops(mod) -> float | None:
    try:
        from tvm.s_tir.analysis import estimate_tir_flops
    except ImportError:
        return None
    try:
        return float(estimate_tir_flops(mod))
    except Exception:  # noqa: BLE001 - estimation is best effort (data-dependent loops have no count)
        return None

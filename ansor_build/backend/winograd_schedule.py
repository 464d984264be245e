"""The loop structure of a Winograd conv kernel (see `winograd`), and its tuning: every point of a small space
measured.

For each tile row in parallel (rows of 4 output rows, so consecutive kernels split the image the same way), tiles
are processed in blocks: the block's input transform, its 36 products and its output transform run back to back,
so that the intermediate tiles of a block stay in L1. Channels are the vector lanes of every stage; the transforms'
6x6 loops are unrolled (their constants fold to a few additions per element); each product keeps a block's tiles x
one vector of output channels in registers over an unrolled run of input channels.

A point of the space (`Point`): tiles per block (a divisor of the tiles in a row), input channels per unrolled run
(a divisor of the input channels, at most 32) and which of the two is the inner loop of the product. That is 20 to
40 points for the zoo's convolutions: tuning measures every point (`points`, `Enumerate`) up to the task's trial
budget instead of running the evolutionary search, which keeps asking for new candidates after a small space is
used up. Untuned builds use `DEFAULT`.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

from .winograd import M, STAGES

LANES = 16  # channels per vector: one AVX-512 register of floats (LLVM splits it on narrower targets)
MAX_CHANNELS_UNROLLED = 32


class Point(NamedTuple):
    """One schedule of the space: its decisions (capped to the kernel's shape when applied)."""

    tiles_per_block: int
    channels_unrolled: int
    tiles_inner: bool  # the product's innermost loop (under the vector lanes): tiles, or the unrolled channels


DEFAULT = Point(tiles_per_block=4, channels_unrolled=16, tiles_inner=True)


def _nodes(stmt):
    """Every statement under `stmt` (TIR's Python API in TVM 0.27 has no statement visitor)."""
    yield stmt
    kind = type(stmt).__name__
    if kind == "SeqStmt":
        for child in stmt.seq:
            yield from _nodes(child)
        return
    for field in ("block", "init", "body", "then_case", "else_case"):
        child = getattr(stmt, field, None)
        if child is not None:
            yield from _nodes(child)


def is_winograd(func) -> bool:
    """Whether a PrimFunc (a fused subgraph) contains this package's Winograd product block."""
    return any(type(n).__name__ == "SBlock" and n.name_hint == "winograd_m" for n in _nodes(func.body))


def _divisors(n: int, cap: int) -> list[int]:
    return [d for d in range(1, min(n, cap) + 1) if n % d == 0]


def _divisor_at_most(n: int, cap: int) -> int:
    return _divisors(n, cap)[-1]


def _lanes(extent: int) -> int:
    return _divisor_at_most(extent, LANES)


def _shape(func) -> tuple[int, int]:
    """(tiles in a row, input channels) of a Winograd kernel, from its blocks' iteration domains."""
    extents = {node.name_hint: [int(iv.dom.extent) for iv in node.iter_vars]
               for node in _nodes(func.body) if type(node).__name__ == "SBlock"}
    return extents["conv2d_winograd"][2] // M, extents["winograd_v"][3]


def points(func) -> list[Point]:
    """Every point of a Winograd kernel's space, DEFAULT's (as capped to this kernel) first."""
    tiles, channels = _shape(func)
    first = Point(_divisor_at_most(tiles, DEFAULT.tiles_per_block),
                  _divisor_at_most(channels, DEFAULT.channels_unrolled), DEFAULT.tiles_inner)
    rest = [Point(*p) for p in itertools.product(_divisors(tiles, tiles), _divisors(channels, MAX_CHANNELS_UNROLLED),
                                                  (True, False))]
    return [first] + [p for p in rest if p != first]


def schedule(sch, point: Point = DEFAULT) -> None:
    """Schedule the Winograd kernel in `sch` (its function "main") at `point`."""
    root = sch.get_sblock("root")
    children = sch.get_child_blocks(root)
    outputs = {sch.get(b).name_hint for b in sch.get_output_blocks(root)}
    # The scatter back to NHWC and every element-wise operator fused after it go into the last (output) block.
    for block in children:
        name = sch.get(block).name_hint
        if name not in STAGES and name not in outputs:
            sch.compute_inline(block)
    sch.compute_inline(sch.get_sblock("winograd_pad"))
    (out,) = [b for b in sch.get_child_blocks(root) if sch.get(b).name_hint in outputs]

    batch, rows, cols, channels = sch.get_loops(out)
    tile_rows, in_rows = sch.split(rows, [None, M])
    tile_cols, in_cols = sch.split(cols, [None, M])
    n_cols = int(sch.get(tile_cols).extent)
    blocks, in_block = sch.split(tile_cols, [None, _divisor_at_most(n_cols, point.tiles_per_block)])
    sch.reorder(batch, tile_rows, blocks, in_block, in_rows, in_cols, channels)
    sch.parallel(sch.fuse(batch, tile_rows))
    _vectorize(sch, channels)

    for name in reversed(STAGES[1:]):
        sch.compute_at(sch.get_sblock(name), blocks, preserve_unit_loops=True)
    for name in ("winograd_v1", "winograd_v", "winograd_y1", "winograd_y"):
        block = sch.get_sblock(name)
        first, second, tile, lane = sch.get_loops(block)[-4:]
        sch.reorder(tile, first, second, lane)
        sch.unroll(first)
        sch.unroll(second)
        _vectorize(sch, lane)

    product = sch.get_sblock("winograd_m")
    first, second, tile, out_ch, in_ch = sch.get_loops(product)[-5:]
    n_in = int(sch.get(in_ch).extent)
    in_outer, in_inner = sch.split(in_ch, [None, _divisor_at_most(n_in, point.channels_unrolled)])
    out_outer, out_lane = sch.split(out_ch, [None, _lanes(int(sch.get(out_ch).extent))])
    inner = (in_inner, tile) if point.tiles_inner else (tile, in_inner)
    sch.reorder(first, second, out_outer, in_outer, *inner, out_lane)
    sch.unroll(in_inner)
    sch.unroll(tile)
    sch.vectorize(out_lane)


def _vectorize(sch, loop) -> None:
    extent = int(sch.get(loop).extent)
    outer, lane = sch.split(loop, [None, _lanes(extent)])
    sch.vectorize(lane)


def space(sch) -> list:
    """MetaSchedule's design spaces of a Winograd task (`ScheduleFn`): one fully decided schedule per point."""
    spaces = []
    for point in points(sch.mod["main"]):
        copy = sch.copy()
        schedule(copy, point)
        spaces.append(copy)
    return spaces


def search_strategy():
    """A MetaSchedule search strategy that measures the design spaces (the points) in order, a batch per round,
    up to the task's trial budget, then ends the task. Points the tuning database already holds a record of (an
    interrupted run's) are not measured again."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms

    @derived_object
    class Enumerate(ms.search_strategy.PySearchStrategy):
        def _initialize_with_tune_context(self, context) -> None:
            self.mod, self.queue, self.per_iter = context.mod, [], 1

        def pre_tuning(self, max_trials, num_trials_per_iter, design_spaces, database=None, cost_model=None):
            measured = set()
            if database is not None and self.mod is not None and database.has_workload(self.mod):
                workload = database.commit_workload(self.mod)
                measured = {str(r.trace.as_json()) for r in database.get_top_k(workload, max(max_trials, 1))}
            fresh = [sch for sch in design_spaces if str(sch.trace.as_json()) not in measured]
            self.queue, self.per_iter = fresh[:max_trials], max(num_trials_per_iter, 1)

        def post_tuning(self) -> None:
            self.queue = []

        def generate_measure_candidates(self):
            if not self.queue:
                return None
            batch, self.queue = self.queue[:self.per_iter], self.queue[self.per_iter:]
            return [ms.MeasureCandidate(sch, ms.arg_info.ArgInfo.from_entry_func(sch.mod, remove_preproc=True))
                    for sch in batch]

        def notify_runner_results(self, measure_candidates, results) -> None:
            pass

        def clone(self):
            return Enumerate()

    return Enumerate()


def default_schedules():
    """A module pass: every Winograd kernel no tuning record scheduled gets the default decisions."""
    import tvm
    from tvm import s_tir, tirx

    def scheduled(func) -> bool:  # a parallel, vectorized or unrolled loop: a schedule was applied
        return any(type(n).__name__ == "For" and int(n.kind) != 0 for n in _nodes(func.body))

    @tvm.transform.module_pass(opt_level=0, name="WinogradDefaultSchedule")
    def apply(mod, _ctx):
        for gvar, func in list(mod.functions_items()):
            if isinstance(func, tirx.PrimFunc) and is_winograd(func) and not scheduled(func):
                sch = s_tir.Schedule(tvm.IRModule({"main": func}))
                schedule(sch, DEFAULT)
                mod[gvar] = sch.mod["main"]
        return mod

    return apply

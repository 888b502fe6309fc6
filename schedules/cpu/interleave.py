"""Sub-pixel interleaves on the blocked layout: the phase as a loop, not a division.

Output position ``o`` of an interleave reads phase ``(o + start) % s`` at row
``(o + start) // s`` (see ``InterleaveAttrs``). Scheduled naively, every vector of
channels pays that division and a select between the phases. When every crop start and
output size is a multiple of its stride, each spatial loop splits into ``(row, phase)``
with the phase innermost, the phase loops unroll, and the index arithmetic folds to
constants: each unrolled step copies one vector of channels from one phase.
"""
from __future__ import annotations

from tvm import s_tir

from convc.ir import Op
from convc.schedules.cpu.common import ScheduleContext, inline_producers, largest_divisor, loop_extent
from convc.schedules.cpu.injective import MIN_PARALLEL


def interleave_phases(func, ctx: ScheduleContext) -> s_tir.Schedule | None:
    """Rows parallel, phases unrolled, the channel block vectorised; None unless the output is
    blocked and every start and output size divides by its stride."""
    if ctx.op is not Op.INTERLEAVE:
        return None
    a = ctx.attrs
    if not _whole_rows(a):
        return None
    sch = s_tir.Schedule(func)
    inline_producers(sch)
    (block,) = sch.get_child_blocks(sch.get_sblock("root"))
    loops = sch.get_loops(block)
    ndim = len(a.strides)
    if len(loops) != 3 + ndim:  # plain output: (n, c, *o); blocked: (n, cb, *o, ci)
        return None
    n, cb, spatial, lanes = loops[0], loops[1], loops[2:2 + ndim], loops[-1]
    rows, phases = _split_phases(sch, spatial, a.strides)
    sch.reorder(n, cb, *[x for pair in zip(rows, phases) for x in pair], lanes)
    for phase in phases:
        sch.unroll(phase)
    sch.vectorize(lanes)
    outer = sch.fuse(n, cb, rows[0])
    if loop_extent(sch, outer) * loop_extent(sch, lanes) * a.strides[0] >= MIN_PARALLEL // 4:
        sch.parallel(outer)
    return sch


def interleave_unblocked(func, ctx: ScheduleContext) -> s_tir.Schedule | None:
    """An interleave of blocked phases written plain (see ``convc.layout.UNBLOCKING_OPS``): per
    tile of one channel block x a few output positions along the last axis, the phases' channel
    vectors are gathered into a local tile (phase loops unrolled, channels vectorised) and written
    out transposed, a vector of positions at a time. None unless every input is blocked by the
    same block dividing the channels and every start and output size divides by its stride."""
    if ctx.op is not Op.INTERLEAVE:
        return None
    a = ctx.attrs
    ndim = len(a.strides)
    if not _whole_rows(a):
        return None
    sch = s_tir.Schedule(func)
    inline_producers(sch)
    (stage,) = sch.get_child_blocks(sch.get_sblock("root"))
    block = _stored_block(sch, stage, ndim)
    if block is None:
        return None
    loops = sch.get_loops(stage)
    if len(loops) != 2 + ndim or loop_extent(sch, loops[1]) % block:
        return None
    n, c, spatial = loops[0], loops[1], loops[2:]
    stride = a.strides[-1]
    width = loop_extent(sch, spatial[-1])
    tile = stride * largest_divisor(width // stride, max(1, block // stride))
    c_outer, c_inner = sch.split(c, [None, block])
    rows, phases = _split_phases(sch, spatial[:-1], a.strides[:-1])
    w_outer, w_inner = sch.split(spatial[-1], [None, tile])
    sch.reorder(n, c_outer, *[x for pair in zip(rows, phases) for x in pair], w_outer, c_inner, w_inner)
    sch.parallel(sch.fuse(n, c_outer, *rows[:1]))
    for phase in phases:
        sch.unroll(phase)
    written = sch.cache_write(stage, 0, "local")
    sch.reverse_compute_at(written, w_outer)
    sch.reorder(w_inner, c_inner)
    sch.unroll(w_inner)
    sch.vectorize(c_inner)
    sch.vectorize(sch.get_loops(written)[-1])
    return sch


def _stored_block(sch: s_tir.Schedule, stage, ndim: int) -> int | None:
    """The channel block of every tensor ``stage`` reads; None if one is plain or they differ."""
    shapes = [tuple(int(d) for d in region.source.shape) for region in sch.get(stage).reads]
    if not shapes or any(len(shape) != 3 + ndim for shape in shapes):
        return None
    blocks = {shape[-1] for shape in shapes}
    return blocks.pop() if len(blocks) == 1 else None


def _whole_rows(attrs) -> bool:
    """Whether every crop start and output size divides by its stride (then the phase of an
    output position is its index modulo the stride, a loop of its own)."""
    return not any(b % s or o % s for b, o, s in zip(attrs.starts, attrs.out_size, attrs.strides))


def _split_phases(sch: s_tir.Schedule, loops, strides) -> tuple[list, list]:
    """Each spatial loop split into (row, phase) by its stride: the rows and the phase loops."""
    rows, phases = [], []
    for loop, stride in zip(loops, strides):
        row, phase = sch.split(loop, [None, stride])
        rows.append(row)
        phases.append(phase)
    return rows, phases

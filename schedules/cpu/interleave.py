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
from convc.schedules.cpu.common import ScheduleContext, inline_producers, loop_extent
from convc.schedules.cpu.injective import MIN_PARALLEL


def interleave_phases(func, ctx: ScheduleContext) -> s_tir.Schedule | None:
    """Rows parallel, phases unrolled, the channel block vectorised; None unless the output is
    blocked and every start and output size divides by its stride."""
    if ctx.op is not Op.INTERLEAVE:
        return None
    a = ctx.attrs
    if any(b % s or o % s for b, o, s in zip(a.starts, a.out_size, a.strides)):
        return None
    sch = s_tir.Schedule(func)
    inline_producers(sch)
    (block,) = sch.get_child_blocks(sch.get_sblock("root"))
    loops = sch.get_loops(block)
    ndim = len(a.strides)
    if len(loops) != 3 + ndim:  # plain output: (n, c, *o); blocked: (n, cb, *o, ci)
        return None
    n, cb, spatial, lanes = loops[0], loops[1], loops[2:2 + ndim], loops[-1]
    rows, phases = [], []
    for loop, stride in zip(spatial, a.strides):
        row, phase = sch.split(loop, [None, stride])
        rows.append(row)
        phases.append(phase)
    sch.reorder(n, cb, *[x for pair in zip(rows, phases) for x in pair], lanes)
    for phase in phases:
        sch.unroll(phase)
    sch.vectorize(lanes)
    outer = sch.fuse(n, cb, rows[0])
    if loop_extent(sch, outer) * loop_extent(sch, lanes) * a.strides[0] >= MIN_PARALLEL // 4:
        sch.parallel(outer)
    return sch

"""Schedules around the blocked channel layout: the blocked -> plain transform, and
reductions (pools) whose result is stored blocked.

``plain[n, c, *s] = stored[n, c // b, *s, c % b]``: read naively, every vector of the
plain output gathers with stride ``b``. Instead each tile of ``b`` channels x a few
positions of the last axis is copied with contiguous loads into a local buffer, and
written out transposed, a vector of positions at a time.
"""
from __future__ import annotations

from tvm import s_tir, tirx
from tvm.tirx.function import IndexMap

from convc.schedules.cpu.common import is_reduction, largest_divisor


def schedule_unblock(func: tirx.PrimFunc, block: int) -> tirx.PrimFunc:
    """``func`` (one block computing the plain tensor from the stored one) scheduled in tiles."""
    sch = s_tir.Schedule(func)
    (stage,) = sch.get_child_blocks(sch.get_sblock("root"))
    n, c, *spatial = sch.get_loops(stage)
    width = int(sch.get(spatial[-1]).extent)
    c_outer, c_inner = sch.split(c, [None, block])
    w_outer, w_inner = sch.split(spatial[-1], [None, largest_divisor(width, block)])
    sch.reorder(n, c_outer, *spatial[:-1], w_outer, c_inner, w_inner)
    sch.parallel(sch.fuse(n, c_outer, *spatial[:-1]))
    tile = sch.cache_read(stage, 0, "local")
    sch.compute_at(tile, w_outer)
    tile_loops = sch.get_loops(tile)
    sch.vectorize(tile_loops[-1])
    sch.unroll(tile_loops[-2])
    sch.unroll(c_inner)
    sch.vectorize(w_inner)
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)


def relayout_blocked_reduction(sch: s_tir.Schedule) -> None:
    """A reduction whose result is stored blocked (a pool or spatial reduction on the blocked
    layout, see ``convc.lower.layout.store_blocked``) computes directly in blocked order.

    Its logical ``(n, c, *s)`` result buffer becomes ``(n, c/b, *s, c%b)`` and its iteration
    ``(n, co, *s, ci, *reduction)``, so the innermost output axis is the channel block: each
    step of the reduction then reads and reduces a whole vector of channels.
    """
    try:
        store = sch.get_sblock("block")
    except s_tir.schedule.ScheduleError:
        return
    producers = sch.get_producers(store)
    if len(producers) != 1 or not is_reduction(sch, producers[0]):
        return
    reduction = producers[0]
    block = int(sch.get(store).writes[0].source.shape[-1])
    iters = sch.get(reduction).iter_vars
    spatial = sum(int(iv.iter_type) != tirx.IterVar.CommReduce for iv in iters)
    if spatial < 2 or int(sch.get(reduction).iter_vars[1].dom.extent) % block:
        return
    dtype = str(iters[0].dom.extent.ty)
    try:  # each step preserves the result; a shape TVM cannot remap keeps the logical order
        sch.transform_layout(reduction, ("write", 0), IndexMap.from_func(
            lambda n, c, *rest: (n, c // block, *rest, c % block), ndim=spatial, index_dtype=dtype))
        sch.transform_block_layout(reduction, IndexMap.from_func(
            lambda n, c, *rest: (n, c // block, *rest[:spatial - 2], c % block, *rest[spatial - 2:]),
            ndim=len(iters), index_dtype=dtype))
    except (s_tir.schedule.ScheduleError, RuntimeError):  # TVM raises InternalError (a RuntimeError)
        return

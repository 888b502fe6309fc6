"""The schedule of the blocked -> plain layout transform.

``plain[n, c, *s] = stored[n, c // b, *s, c % b]``: read naively, every vector of the
plain output gathers with stride ``b``. Instead each tile of ``b`` channels x a few
positions of the last axis is copied with contiguous loads into a local buffer, and
written out transposed, a vector of positions at a time.
"""
from __future__ import annotations

from tvm import s_tir, tirx

from convc.schedules.cpu.common import largest_divisor


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

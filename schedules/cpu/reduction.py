"""Reduction blocks: parallelise over the fused spatial (output) loops, reduce serially inside."""
from __future__ import annotations

from tvm import s_tir, tirx

from convc.schedules.cpu.common import is_empty, loop_extent


VECTOR_EXTENTS = (4, 8, 16)


def schedule_reduction(sch: s_tir.Schedule, block) -> None:
    """Fuse the leading spatial loops of ``block`` and run them in parallel.

    A reduction over an empty axis only gets its init hoisted out of the reduction loops:
    TE runs the init on the first reduction iteration, and an empty axis has none, so
    the output (the reducer's identity: 0 for a sum, 1 for a product) would never be written.
    """
    loops = sch.get_loops(block)
    kinds = [int(iv.iter_type) for iv in sch.get(block).iter_vars]
    n_spatial = kinds.index(tirx.IterVar.CommReduce) if tirx.IterVar.CommReduce in kinds else len(kinds)
    spatial, reduced = loops[:n_spatial], loops[n_spatial:]
    if is_empty(sch, block):
        if reduced and not any(loop_extent(sch, loop) == 0 for loop in spatial):
            sch.decompose_reduction(block, reduced[0])
        return
    if not spatial:
        return
    lanes = loop_extent(sch, spatial[-1])
    if reduced and len(spatial) > 1 and lanes in VECTOR_EXTENTS:
        # a short innermost output axis (the channel block of the blocked layout): reduce whole
        # vectors of it at once, the reduction loops outside
        sch.reorder(*spatial[:-1], *reduced, spatial[-1])
        sch.vectorize(spatial[-1])
        spatial = spatial[:-1]
        fused = sch.fuse(*spatial) if len(spatial) > 1 else spatial[0]
        if loop_extent(sch, fused) > 1:
            sch.parallel(fused)
        sch.decompose_reduction(block, reduced[0])
        return
    fused = sch.fuse(*spatial) if len(spatial) > 1 else spatial[0]
    if loop_extent(sch, fused) > 1:
        sch.parallel(fused)

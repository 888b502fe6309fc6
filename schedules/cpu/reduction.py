"""Reduction blocks: parallelise over the fused spatial (output) loops, reduce serially inside."""
from __future__ import annotations

from tvm import s_tir, tirx

from convc.schedules.cpu.common import loop_extent


def schedule_reduction(sch: s_tir.Schedule, block) -> None:
    """Fuse the leading spatial loops of ``block`` and run them in parallel."""
    loops = sch.get_loops(block)
    kinds = [int(iv.iter_type) for iv in sch.get(block).iter_vars]
    n_spatial = kinds.index(tirx.IterVar.CommReduce) if tirx.IterVar.CommReduce in kinds else len(kinds)
    spatial = loops[:n_spatial]
    if not spatial:
        return
    fused = sch.fuse(*spatial) if len(spatial) > 1 else spatial[0]
    if loop_extent(sch, fused) > 1:
        sch.parallel(fused)

"""Spatial (injective) blocks: fuse every loop, vectorise the inner lanes, parallelise the rest."""
from __future__ import annotations

from tvm import s_tir

from convc.schedules.cpu.common import is_empty, loop_extent, vector_width

MIN_PARALLEL = 1 << 12  # elements; below this, threads cost more than they save


def schedule_injective(sch: s_tir.Schedule, block, vector: int) -> None:
    """Fuse ``block``'s loops into one, split off a ``vector``-wide inner loop when it divides.

    A block of a zero-size tensor never runs and is left alone (fusing it would divide by zero).
    """
    loops = sch.get_loops(block)
    if not loops or is_empty(sch, block):
        return
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    total = loop_extent(sch, fused)
    width = vector_width(total, vector)
    if width > 1:
        fused, inner = sch.split(fused, [None, width])
        sch.vectorize(inner)
    if total >= MIN_PARALLEL:
        sch.parallel(fused)

"""Direct convolution on CPU: a register block of output channels x output width.

The conv block's loops are ``n, m, o1..on, rc, rk1..rkn``. The schedule splits ``m``
into vectors of ``V`` channels and the last output axis into blocks of ``W``
positions, moves those two inner loops under the reduction so the ``V x W``
accumulators stay in registers, vectorises ``m``, unrolls the width block,
parallelises the fused outer loops, inlines the padding, and writes the block out
(through the bias/epilogue block when there is one) once per ``V x W`` tile.
Any rank, stride, dilation and group count fits; it declines when no ``V`` > 1
divides the channel count.
"""
from __future__ import annotations

from tvm import s_tir

from convc.ir import Op
from convc.schedules.cpu.common import (ScheduleContext, inline_producers, is_reduction, lanes,
                                        largest_divisor, loop_extent, vector_width)

WIDTH_BLOCK = 8


def _conv_block(sch: s_tir.Schedule):
    reductions = [b for b in sch.get_child_blocks(sch.get_sblock("root"))
                  if is_reduction(sch, b)]
    return reductions[0] if len(reductions) == 1 else None


def direct_conv(func, ctx: ScheduleContext) -> s_tir.Schedule | None:
    """The register-blocked direct conv schedule, or None when it does not apply."""
    if ctx.op is not Op.CONV:
        return None
    sch = s_tir.Schedule(func)
    inline_producers(sch)
    block = _conv_block(sch)
    if block is None:
        return None
    loops = sch.get_loops(block)
    ndim = ctx.attrs.ndim
    n, m, spatial, reduce = loops[0], loops[1], loops[2:2 + ndim], loops[2 + ndim:]
    vector = vector_width(loop_extent(sch, m), lanes(ctx.dtype))
    if vector < 2:
        return None
    width = largest_divisor(loop_extent(sch, spatial[-1]), WIDTH_BLOCK)
    m_outer, m_inner = sch.split(m, [None, vector])
    w_outer, w_inner = sch.split(spatial[-1], [None, width])
    sch.reorder(n, m_outer, *spatial[:-1], w_outer, *reduce, w_inner, m_inner)
    sch.vectorize(m_inner)
    sch.unroll(w_inner)
    sch.parallel(sch.fuse(n, m_outer, *spatial[:-1]))
    consumers = sch.get_consumers(block)
    epilogue = consumers[0] if len(consumers) == 1 else sch.cache_write(block, 0, "local")
    sch.reverse_compute_at(epilogue, w_outer)
    sch.decompose_reduction(block, reduce[0])
    return sch

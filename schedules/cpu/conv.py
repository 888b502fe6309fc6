"""Direct convolution on CPU: a register tile of output channels x output width.

The conv block's loops are ``n, m, o1..on, rc, rk1..rkn``. The schedules split ``m``
into blocks of ``V`` channels and the last output axis into blocks of ``W``
positions, move those two inner loops under the reduction so the ``V x W``
accumulators stay in registers, vectorise one of them and unroll the other,
parallelise the fused outer loops, inline the padding, and write the tile out (through
the bias/epilogue block when there is one) once per ``V x W`` tile. Any rank, stride,
dilation and group count fits.

- ``direct_conv`` vectorises channels; it declines when no power of two > 1 divides M.
- ``direct_conv_width`` vectorises the output width instead (odd channel counts); it
  declines when the last output axis has no divisor > 1 up to the block size.
"""
from __future__ import annotations

from tvm import s_tir

from convc.ir import Op
from convc.schedules.cpu.common import (ScheduleContext, inline_producers, is_reduction, lanes,
                                        largest_divisor, loop_extent, vector_width)

WIDTH_BLOCK = 8
CHANNEL_BLOCK = 4  # unrolled channels when the width is vectorised


def _conv_schedule(func, ctx: ScheduleContext):
    """A schedule with the padding inlined and the single reduction block, or None."""
    if ctx.op is not Op.CONV:
        return None, None
    sch = s_tir.Schedule(func)
    inline_producers(sch)
    reductions = [b for b in sch.get_child_blocks(sch.get_sblock("root")) if is_reduction(sch, b)]
    return (sch, reductions[0]) if len(reductions) == 1 else (None, None)


def _register_tile(sch: s_tir.Schedule, block, ndim: int, channels: int, width: int,
                   vectorise_channels: bool) -> s_tir.Schedule:
    loops = sch.get_loops(block)
    n, m, spatial, reduce = loops[0], loops[1], loops[2:2 + ndim], loops[2 + ndim:]
    m_outer, m_inner = sch.split(m, [None, channels])
    w_outer, w_inner = sch.split(spatial[-1], [None, width])
    if vectorise_channels:
        sch.reorder(n, m_outer, *spatial[:-1], w_outer, *reduce, w_inner, m_inner)
        sch.vectorize(m_inner)
        sch.unroll(w_inner)
    else:
        sch.reorder(n, m_outer, *spatial[:-1], w_outer, *reduce, m_inner, w_inner)
        sch.vectorize(w_inner)
        sch.unroll(m_inner)
    sch.parallel(sch.fuse(n, m_outer, *spatial[:-1]))
    consumers = sch.get_consumers(block)
    epilogue = consumers[0] if len(consumers) == 1 else sch.cache_write(block, 0, "local")
    sch.reverse_compute_at(epilogue, w_outer)
    sch.decompose_reduction(block, reduce[0])
    return sch


def direct_conv(func, ctx: ScheduleContext) -> s_tir.Schedule | None:
    """Channels vectorised, a width block unrolled; None when M has no even vector."""
    sch, block = _conv_schedule(func, ctx)
    if sch is None:
        return None
    loops = sch.get_loops(block)
    channels = vector_width(loop_extent(sch, loops[1]), lanes(ctx.dtype))
    if channels < 2:
        return None
    width = largest_divisor(loop_extent(sch, loops[1 + ctx.attrs.ndim]), WIDTH_BLOCK)
    return _register_tile(sch, block, ctx.attrs.ndim, channels, width, vectorise_channels=True)


def direct_conv_width(func, ctx: ScheduleContext) -> s_tir.Schedule | None:
    """Output width vectorised, a channel block unrolled; None when the width has no block."""
    sch, block = _conv_schedule(func, ctx)
    if sch is None:
        return None
    loops = sch.get_loops(block)
    width = largest_divisor(loop_extent(sch, loops[1 + ctx.attrs.ndim]), WIDTH_BLOCK)
    if width < 2:
        return None
    channels = largest_divisor(loop_extent(sch, loops[1]), CHANNEL_BLOCK)
    return _register_tile(sch, block, ctx.attrs.ndim, channels, width, vectorise_channels=False)

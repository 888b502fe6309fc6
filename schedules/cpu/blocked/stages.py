"""TE stages and schedule steps the blocked kernels share.

Every kernel reads the data through an optional padding stage (a copy into a zero
border, so the inner loops carry no bounds checks), accumulates the conv into a
blocked ``acc`` tensor (made a local buffer per register tile by the schedule) and
writes the output through the epilogue stage.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from tvm import s_tir, te, tirx

from convc.schedules.cpu.blocked.epilogue import epilogue_stage
from convc.schedules.cpu.blocked.layout import Channel, aligned_shape, load, physical_shape
from convc.schedules.cpu.blocked.problem import ConvProblem


@dataclass(frozen=True)
class Args:
    """The PrimFunc's input placeholders (see ``kernel`` for their order)."""

    data: te.Tensor
    weight: te.Tensor
    bias: te.Tensor | None
    operands: tuple[te.Tensor, ...]

    def signature(self, out: te.Tensor) -> list[te.Tensor]:
        return [self.data, self.weight, *([self.bias] if self.bias is not None else []),
                *self.operands, out]


def placeholders(p: ConvProblem, weight_shape: Sequence[int]) -> Args:
    rank = 2 + p.ndim
    operands = tuple(
        te.placeholder(physical_shape(aligned_shape(s, rank), p.out_block), p.dtype, name=f"operand{i}")
        for i, s in enumerate(p.operand_shapes))
    return Args(te.placeholder(physical_shape(p.in_shape, p.in_block), p.dtype, name="data"),
                te.placeholder(tuple(weight_shape), p.dtype, name="weight"),
                te.placeholder((p.out_channels,), p.dtype, name="bias") if p.has_bias else None,
                operands)


def pad_stage(p: ConvProblem, data: te.Tensor) -> te.Tensor:
    """``data`` with the conv's zero border (physical layout kept); ``data`` if none."""
    if not p.padded:
        return data
    n = p.ndim
    shape = [int(d) for d in data.shape]
    first = 2
    for i in range(n):
        shape[first + i] += p.pads_begin[i] + p.pads_end[i]

    def body(*idx):
        spatial = idx[first:first + n]
        inside = tirx.all(*[tirx.all(s >= pb, s < pb + size) for s, pb, size in
                            zip(spatial, p.pads_begin, p.in_size)])
        src = list(idx)
        src[first:first + n] = [s - pb for s, pb in zip(spatial, p.pads_begin)]
        return tirx.if_then_else(inside, data[tuple(src)], tirx.const(0.0, data.dtype))
    return te.compute(tuple(shape), body, name="pad")


def window(p: ConvProblem, out_pos: Sequence, taps: Sequence) -> list:
    """Padded-input position read by output position ``out_pos`` at kernel tap ``taps``."""
    return [o * s + k * d for o, k, s, d in zip(out_pos, taps, p.strides, p.dilations)]


def read(p: ConvProblem, padded: te.Tensor, n, channel: Channel, spatial) -> tirx.PrimExpr:
    return load(padded, p.in_block, n, channel, spatial)


def read_unpadded(p: ConvProblem, data: te.Tensor, n, channel: Channel, spatial) -> tirx.PrimExpr:
    """What ``read`` reads at padded-input position ``spatial``, from the unpadded ``data``: the
    zero border as an in-bounds condition (marked likely) instead of a padded copy."""
    pos = [s - pb for s, pb in zip(spatial, p.pads_begin)]
    inside = tirx.likely(tirx.all(*[tirx.all(q >= 0, q < size) for q, size in zip(pos, p.in_size)]))
    return tirx.if_then_else(inside, load(data, p.in_block, n, channel, pos), tirx.const(0.0, data.dtype))


def output(p: ConvProblem, args: Args, acc: Callable) -> te.Tensor:
    """The epilogue stage writing the physical output."""
    return epilogue_stage(physical_shape(p.out_shape, p.out_block), p.out_block, acc, args.bias,
                          args.operands, p.epilogue, p.dtype)


def acc_reader(acc: te.Tensor, block: int) -> Callable:
    """``acc(n, channel, spatial)`` over a blocked accumulator of ``block``."""
    return lambda n, channel, spatial: load(acc, block, n, channel, spatial)


def pack_blocked_weight(w: np.ndarray, tile: int, rblock: int) -> np.ndarray:
    """ONNX ``(M, C/g, *K)`` to ``(M//tile, C/g//rblock, *K, rblock, tile)``."""
    m, cpg, *kernel = w.shape
    n = len(kernel)
    x = w.reshape(m // tile, tile, cpg // rblock, rblock, *kernel)
    order = (0, 2, *range(4, 4 + n), 3, 1)
    return np.ascontiguousarray(x.transpose(order))


def schedule_copy(sch: s_tir.Schedule, name: str) -> None:
    """A parallel, vectorised loop nest for a copy stage (padding, patches)."""
    block = sch.get_sblock(name)
    loops = sch.get_loops(block)
    if len(loops) > 1:
        sch.vectorize(loops[-1])
    outer = loops[:max(1, min(3, len(loops) - 1))]
    sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])


def vector_block(p: ConvProblem, lanes: int) -> int:
    """The accumulator's channel block: the output's, else the widest power of two up to
    ``lanes`` that divides the channels of a group."""
    if p.out_block:
        return p.out_block
    return widest_vector(p.out_per_group, lanes)


def widest_vector(count: int, lanes: int) -> int:
    """The widest power of two up to ``lanes`` (at most 16) that divides ``count``."""
    return next(b for b in (16, 8, 4, 2, 1) if b <= lanes and count % b == 0)


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def spatial_extent(p: ConvProblem) -> int:
    return math.prod(p.out_size)

"""The blocked channel layout: NumPy packing for callers and TE indexing for kernels.

A tensor of logical shape ``(N, C, *S)`` with channel block ``b > 0`` is stored as
``(N, C//b, *S, b)``: logical ``x[n, c, *s]`` lives at ``phys[n, c//b, *s, c%b]``.
Block 0 is the plain layout ``(N, C, *S)``.

Epilogue operands broadcast to the conv output ``(N, M, *O)``. Their physical form: the
logical shape is first right-aligned to the output's rank (leading 1s prepended); a
channel dim of 1 stays ``1`` in both channel positions, otherwise the channel dim is
blocked like the output. So with block 8 a per-channel constant ``(M, 1, 1)`` is stored
as ``(1, M//8, 1, 1, 8)``, a residual ``(N, M, H, W)`` as ``(N, M//8, H, W, 8)`` and a
scalar as ``(1, 1, 1, 1, 1)``. Every dim of extent 1 is read at index 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import te, tirx
from tvm.ir.expr import Expr


def aligned_shape(shape: tuple[int, ...], rank: int) -> tuple[int, ...]:
    """``shape`` with leading 1s up to ``rank`` (NumPy broadcasting alignment)."""
    return (1,) * (rank - len(shape)) + tuple(shape)


def physical_shape(shape: tuple[int, ...], block: int) -> tuple[int, ...]:
    """The stored shape of a logical ``(N, C, *S)`` tensor (C may be 1: a broadcast dim)."""
    if not block:
        return tuple(shape)
    n, c, *spatial = shape
    return (n, c // block, *spatial, block) if c > 1 else (n, 1, *spatial, 1)


def pack(x: np.ndarray, block: int) -> np.ndarray:
    """Logical ``(N, C, *S)`` to the layout of ``block`` (a contiguous copy)."""
    if not block or x.shape[1] == 1:
        return np.ascontiguousarray(x.reshape(physical_shape(x.shape, block)))
    n, c, *spatial = x.shape
    return np.ascontiguousarray(np.moveaxis(x.reshape(n, c // block, block, *spatial), 2, -1))


def unpack(x: np.ndarray, block: int) -> np.ndarray:
    """The inverse of ``pack``: a physical tensor back to logical ``(N, C, *S)``."""
    if not block:
        return x
    n, cb, *spatial, b = x.shape
    return np.moveaxis(x, -1, 2).reshape(n, cb * b, *spatial)


def pack_operand(x: np.ndarray, out_shape: tuple[int, ...], block: int) -> np.ndarray:
    """An epilogue operand in its physical form (see the module docstring)."""
    return pack(x.reshape(aligned_shape(x.shape, len(out_shape))), block)


@dataclass(frozen=True)
class Channel:
    """A channel index given as (outer, inner) of a block: ``c = outer * block + inner``.

    Keeping the pair avoids div/mod in the generated code when the tensor read has
    the same block; ``block=0`` means ``outer`` is the logical channel itself.
    """

    outer: Expr
    inner: Expr | int = 0
    block: int = 0

    @property
    def logical(self) -> Expr:
        return self.outer * self.block + self.inner if self.block else self.outer

    def split(self, block: int) -> tuple[Expr, Expr]:
        """(outer, inner) of this channel in a layout of ``block`` (> 0)."""
        if block == self.block:
            return self.outer, self.inner
        c = self.logical
        return c // block, c % block


def load(t: te.Tensor, block: int, n, channel: Channel, spatial) -> Expr:
    """Read logical ``[n, channel, *spatial]`` of ``t`` stored with ``block``; size-1 dims read 0."""
    shape = [int(d) for d in t.shape]
    pos = 0 if shape[0] == 1 else n
    broadcast_c = shape[1] == 1 and (not block or shape[-1] == 1)
    space = [0 if d == 1 else s for s, d in zip(spatial, shape[2:2 + len(spatial)])]
    if not block:
        return t[(pos, 0 if broadcast_c else channel.logical, *space)]
    if broadcast_c:
        return t[(pos, 0, *space, 0)]
    outer, inner = channel.split(block)
    return t[(pos, outer, *space, inner)]

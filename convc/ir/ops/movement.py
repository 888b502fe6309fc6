"""Data movement: reshape, transpose, broadcast, concat, slice, pad, gather.

Every attribute is explicit and canonical: shapes have no 0/-1 placeholders, axes are
non-negative, slices are given for every axis.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from convc.ir.op import Op, OpDef, register
from convc.ir.ops._util import broadcast_shapes, require, same_dtype
from convc.ir.types import INT_DTYPES, TensorType


@dataclass(frozen=True)
class ReshapeAttrs:
    shape: tuple[int, ...]


@dataclass(frozen=True)
class TransposeAttrs:
    perm: tuple[int, ...]


@dataclass(frozen=True)
class BroadcastToAttrs:
    """Broadcast to ``shape`` exactly (ONNX Expand with its result shape resolved)."""

    shape: tuple[int, ...]


@dataclass(frozen=True)
class ConcatAttrs:
    axis: int


@dataclass(frozen=True)
class SliceAttrs:
    """Per axis, the indices ``range(starts[i], ends[i], steps[i])``.

    Starts and ends are resolved against the axis size; an end of -1 with a negative
    step means "through index 0".
    """

    starts: tuple[int, ...]
    ends: tuple[int, ...]
    steps: tuple[int, ...]

    def lengths(self) -> tuple[int, ...]:
        return tuple(len(range(b, e, s)) for b, e, s in zip(self.starts, self.ends, self.steps))


class PadMode(str, enum.Enum):
    CONSTANT = "constant"
    REFLECT = "reflect"
    EDGE = "edge"
    WRAP = "wrap"


@dataclass(frozen=True)
class PadAttrs:
    """Pad every axis by non-negative ``pads_begin``/``pads_end``."""

    mode: PadMode
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]
    value: float = 0.0


@dataclass(frozen=True)
class GatherAttrs:
    """np.take(data, indices, axis); indices are the second input, already non-negative."""

    axis: int


@dataclass(frozen=True)
class InterleaveAttrs:
    """Interleave sub-pixel phases into one tensor (a pixel shuffle fused with a crop).

    The inputs, concatenated along channels, are ``(N, P*M, *Q)`` with channel ``p*M + m``,
    where ``p`` is the row-major index of the phase ``r`` over ``strides`` (P = prod
    strides). Output ``(N, M, *out_size)``: ``out[n, m, *o] = cat[n, p(r)*M + m, *q]``
    with ``o + starts = q * strides + r`` per spatial axis.
    """

    strides: tuple[int, ...]
    starts: tuple[int, ...]
    out_size: tuple[int, ...]
    in_place: bool = False  # code generation only: the phase convs write their rows straight into
                            # the output (``convc.lower.fusion``: PHASE_WRITES); same result


def _infer_reshape(attrs: ReshapeAttrs, types):
    (x,) = types
    require(all(d >= 0 for d in attrs.shape) and int(np.prod(attrs.shape)) == x.size,
            f"reshape: cannot reshape {x} to {attrs.shape}")
    return [TensorType(attrs.shape, x.dtype)]


def _infer_transpose(attrs: TransposeAttrs, types):
    (x,) = types
    require(sorted(attrs.perm) == list(range(x.rank)), f"transpose: perm {attrs.perm} does not fit {x}")
    return [TensorType(tuple(x.shape[p] for p in attrs.perm), x.dtype)]


def _infer_broadcast_to(attrs: BroadcastToAttrs, types):
    (x,) = types
    require(broadcast_shapes("broadcast_to", x.shape, attrs.shape) == tuple(attrs.shape),
            f"broadcast_to: {x} does not broadcast to {attrs.shape}")
    return [TensorType(attrs.shape, x.dtype)]


def _infer_concat(attrs: ConcatAttrs, types: Sequence[TensorType]):
    first = types[0]
    dtype = same_dtype("concat", types)
    require(0 <= attrs.axis < first.rank, f"concat: axis {attrs.axis} outside rank {first.rank}")
    for t in types:
        require(t.rank == first.rank and all(a == b for i, (a, b) in enumerate(zip(t.shape, first.shape))
                                            if i != attrs.axis),
                f"concat: {t} does not fit {first} along axis {attrs.axis}")
    shape = list(first.shape)
    shape[attrs.axis] = sum(t.shape[attrs.axis] for t in types)
    return [TensorType(tuple(shape), dtype)]


def _infer_slice(attrs: SliceAttrs, types):
    (x,) = types
    require(len(attrs.starts) == len(attrs.ends) == len(attrs.steps) == x.rank,
            f"slice: attributes {attrs} do not cover every axis of {x}")
    for b, e, s, d in zip(attrs.starts, attrs.ends, attrs.steps, x.shape):
        require(s != 0, "slice: step 0")
        for i in (range(b, e, s)[:1] or []), (range(b, e, s)[-1:] or []):
            require(all(0 <= j < d for j in i), f"slice: range({b}, {e}, {s}) leaves an axis of size {d}")
    return [TensorType(attrs.lengths(), x.dtype)]


def _slice_reference(attrs: SliceAttrs, xs):
    (x,) = xs
    for axis, (b, e, s) in enumerate(zip(attrs.starts, attrs.ends, attrs.steps)):
        x = np.take(x, np.arange(b, e, s, dtype=np.int64), axis=axis)
    return [x]


def _infer_pad(attrs: PadAttrs, types):
    (x,) = types
    require(len(attrs.pads_begin) == len(attrs.pads_end) == x.rank, f"pad: pads do not cover {x}")
    require(min(attrs.pads_begin + attrs.pads_end, default=0) >= 0, "pad: pads must be non-negative")
    if attrs.mode is PadMode.REFLECT:
        require(all(max(b, e) < d or (b == e == 0) for b, e, d in zip(attrs.pads_begin, attrs.pads_end, x.shape)),
                f"pad: reflect pads {attrs.pads_begin}/{attrs.pads_end} must be smaller than {x}")
    if attrs.mode in (PadMode.EDGE, PadMode.WRAP):
        require(all(d > 0 or (b == e == 0) for b, e, d in zip(attrs.pads_begin, attrs.pads_end, x.shape)),
                f"pad: cannot {attrs.mode.value}-pad an empty axis of {x}")
    shape = tuple(d + b + e for d, b, e in zip(x.shape, attrs.pads_begin, attrs.pads_end))
    return [TensorType(shape, x.dtype)]


def _pad_reference(attrs: PadAttrs, xs):
    (x,) = xs
    widths = list(zip(attrs.pads_begin, attrs.pads_end))
    if attrs.mode is PadMode.CONSTANT:
        return [np.pad(x, widths, constant_values=np.array(attrs.value).astype(x.dtype))]
    return [np.pad(x, widths, mode=attrs.mode.value)]


def _infer_interleave(attrs: InterleaveAttrs, types: Sequence[TensorType]):
    first = types[0]
    dtype = same_dtype("interleave", types)
    n = len(attrs.strides)
    require(first.rank == n + 2 and len(attrs.starts) == len(attrs.out_size) == n,
            f"interleave: attributes {attrs} do not fit {first}")
    require(all(t.rank == first.rank and t.shape[0] == first.shape[0] and t.shape[2:] == first.shape[2:]
                for t in types), f"interleave: phase shapes differ: {[str(t) for t in types]}")
    phases = int(np.prod(attrs.strides))
    channels = sum(t.shape[1] for t in types)
    require(channels % phases == 0, f"interleave: {channels} channels do not split into {phases} phases")
    require(all(0 <= b and b + o <= q * s for b, o, q, s in zip(attrs.starts, attrs.out_size, first.shape[2:],
                                                               attrs.strides)),
            f"interleave: crop {attrs.starts}+{attrs.out_size} leaves the interleaved {first.shape[2:]}")
    return [TensorType((first.shape[0], channels // phases, *attrs.out_size), dtype)]


def _interleave_reference(attrs: InterleaveAttrs, xs):
    cat = np.concatenate(xs, axis=1)
    n, strides = len(attrs.strides), attrs.strides
    m = cat.shape[1] // int(np.prod(strides))
    y = cat.reshape(cat.shape[0], *strides, m, *cat.shape[2:])
    perm = (0, 1 + n, *[i for a in range(n) for i in (2 + n + a, 1 + a)])
    y = y.transpose(perm).reshape(cat.shape[0], m, *(q * s for q, s in zip(cat.shape[2:], strides)))
    window = tuple(slice(b, b + o) for b, o in zip(attrs.starts, attrs.out_size))
    return [np.ascontiguousarray(y[(slice(None), slice(None), *window)])]


def _infer_gather(attrs: GatherAttrs, types):
    data, indices = types
    require(0 <= attrs.axis < data.rank, f"gather: axis {attrs.axis} outside rank {data.rank}")
    require(indices.dtype in INT_DTYPES, f"gather: indices must be integers, got {indices}")
    return [TensorType(data.shape[:attrs.axis] + indices.shape + data.shape[attrs.axis + 1:], data.dtype)]


register(OpDef(Op.RESHAPE, ReshapeAttrs, (1, 1), _infer_reshape,
               lambda a, xs: [xs[0].reshape(a.shape)]))
register(OpDef(Op.TRANSPOSE, TransposeAttrs, (1, 1), _infer_transpose,
               lambda a, xs: [np.transpose(xs[0], a.perm)]))
register(OpDef(Op.BROADCAST_TO, BroadcastToAttrs, (1, 1), _infer_broadcast_to,
               lambda a, xs: [np.broadcast_to(xs[0], a.shape).copy()]))
register(OpDef(Op.CONCAT, ConcatAttrs, (1, 1 << 16), _infer_concat,
               lambda a, xs: [np.concatenate(xs, axis=a.axis)]))
register(OpDef(Op.SLICE, SliceAttrs, (1, 1), _infer_slice, _slice_reference))
register(OpDef(Op.PAD, PadAttrs, (1, 1), _infer_pad, _pad_reference))
register(OpDef(Op.INTERLEAVE, InterleaveAttrs, (1, 1 << 16), _infer_interleave, _interleave_reference))
register(OpDef(Op.GATHER, GatherAttrs, (2, 2), _infer_gather,
               lambda a, xs: [np.take(xs[0], xs[1], axis=a.axis)]))

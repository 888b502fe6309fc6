"""Pooling over sliding windows and reductions over axes.

Pool windows follow the conv arithmetic (kernel, strides, per-side pads, dilations).
With ``ceil_mode`` the output size rounds up, but a window must start inside the input
or its begin padding; the extra end region this opens is never counted by avg_pool.
"""
from __future__ import annotations

import enum
import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from convc.ir.op import Op, OpDef, register
from convc.ir.ops._util import require
from convc.ir.types import FLOAT_DTYPES, TensorType


@dataclass(frozen=True)
class PoolAttrs:
    """Window pooling over the spatial axes of an (N, C, D1..Dn) tensor."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]
    dilations: tuple[int, ...]
    ceil_mode: bool = False
    count_include_pad: bool = False


def pool_output_size(i: int, k: int, s: int, pb: int, pe: int, d: int, ceil_mode: bool) -> int:
    span = i + pb + pe - d * (k - 1) - 1
    if not ceil_mode:
        return span // s + 1
    o = math.ceil(span / s) + 1
    if (o - 1) * s >= i + pb:  # the last window would start in the end padding
        o -= 1
    return o


def _infer_pool(op: Op):
    def infer(attrs: PoolAttrs, types: Sequence[TensorType]) -> list[TensorType]:
        (x,) = types
        n = x.rank - 2
        require(n >= 1, f"{op}: needs an (N, C, spatial...) input, got {x}")
        require(x.dtype in FLOAT_DTYPES, f"{op}: needs a float input, got {x}")
        for field in ("kernel", "strides", "pads_begin", "pads_end", "dilations"):
            require(len(getattr(attrs, field)) == n,
                    f"{op}: {field}={getattr(attrs, field)} does not have {n} entries")
        out = [pool_output_size(i, k, s, pb, pe, d, attrs.ceil_mode) for i, k, s, pb, pe, d in zip(
            x.shape[2:], attrs.kernel, attrs.strides, attrs.pads_begin, attrs.pads_end, attrs.dilations)]
        require(all(o >= 1 for o in out), f"{op}: output size {out} is empty for input {x}")
        return [TensorType((*x.shape[:2], *out), x.dtype)]
    return infer


def pool_reference(attrs: PoolAttrs, x: np.ndarray, kind: str) -> np.ndarray:
    (out_type,) = _infer_pool(Op.MAX_POOL if kind == "max" else Op.AVG_POOL)(attrs, [TensorType.of(x)])
    out = out_type.shape[2:]
    extra = [max(0, (o - 1) * s + d * (k - 1) + 1 - (i + pb + pe)) for o, s, d, k, i, pb, pe in zip(
        out, attrs.strides, attrs.dilations, attrs.kernel, x.shape[2:], attrs.pads_begin, attrs.pads_end)]
    widths = [(0, 0), (0, 0)] + [(pb, pe + e) for pb, pe, e in zip(attrs.pads_begin, attrs.pads_end, extra)]
    if kind == "max":
        xp = np.pad(x, widths, constant_values=-np.inf)
        acc = np.full(out_type.shape, -np.inf, dtype=x.dtype)
    else:
        xp = np.pad(x.astype(np.float64), widths)
        counted = np.ones(x.shape[2:])
        if attrs.count_include_pad:
            counted = np.pad(counted, list(zip(attrs.pads_begin, attrs.pads_end)), constant_values=1)
            counted = np.pad(counted, [(0, e) for e in extra])
        else:
            counted = np.pad(counted, [w for w in widths[2:]])
        acc = np.zeros(out_type.shape, dtype=np.float64)
        count = np.zeros(out, dtype=np.float64)
    for tap in itertools.product(*(range(k) for k in attrs.kernel)):
        index = tuple(slice(t * d, t * d + s * (o - 1) + 1, s)
                      for t, s, d, o in zip(tap, attrs.strides, attrs.dilations, out))
        if kind == "max":
            acc = np.maximum(acc, xp[(slice(None), slice(None)) + index])
        else:
            acc += xp[(slice(None), slice(None)) + index]
            count += counted[index]
    if kind == "max":
        return acc
    return (acc / np.maximum(count, 1)).astype(x.dtype)


@dataclass(frozen=True)
class ReduceAttrs:
    """Reduce over ``axes`` (sorted, non-negative); ``keepdims`` keeps them as size 1."""

    axes: tuple[int, ...]
    keepdims: bool = True


class _Reduction(enum.Enum):
    MEAN = (Op.REDUCE_MEAN, np.mean)
    MAX = (Op.REDUCE_MAX, np.max)
    MIN = (Op.REDUCE_MIN, np.min)
    SUM = (Op.REDUCE_SUM, np.sum)
    PROD = (Op.REDUCE_PROD, np.prod)


def _infer_reduce(op: Op):
    def infer(attrs: ReduceAttrs, types: Sequence[TensorType]) -> list[TensorType]:
        (x,) = types
        require(all(0 <= a < x.rank for a in attrs.axes) and list(attrs.axes) == sorted(set(attrs.axes)),
                f"{op}: axes {attrs.axes} must be sorted, unique and within rank {x.rank}")
        if op in (Op.REDUCE_MAX, Op.REDUCE_MIN):
            require(all(x.shape[a] > 0 for a in attrs.axes), f"{op}: cannot reduce an empty axis of {x}")
        shape = tuple(1 if i in attrs.axes else d for i, d in enumerate(x.shape)
                      if attrs.keepdims or i not in attrs.axes)
        return [TensorType(shape, x.dtype)]
    return infer


def _reduce_reference(fn):
    def reference(attrs: ReduceAttrs, xs):
        (x,) = xs
        return [np.asarray(fn(x, axis=attrs.axes, keepdims=attrs.keepdims)).astype(x.dtype)]
    return reference


register(OpDef(Op.MAX_POOL, PoolAttrs, (1, 1), _infer_pool(Op.MAX_POOL),
               lambda a, xs: [pool_reference(a, xs[0], "max")]))
register(OpDef(Op.AVG_POOL, PoolAttrs, (1, 1), _infer_pool(Op.AVG_POOL),
               lambda a, xs: [pool_reference(a, xs[0], "avg")]))
for _r in _Reduction:
    register(OpDef(_r.value[0], ReduceAttrs, (1, 1), _infer_reduce(_r.value[0]), _reduce_reference(_r.value[1])))

"""N-d max and average pooling over windows, with ceil_mode and count_include_pad.

The window of output o along an axis covers input positions ``o*s - pb + t*d`` for
``t < k``. Max pooling pads with -inf; average pooling sums zeros there and divides
by the number of counted taps: those inside the input, or, with ``count_include_pad``,
inside the input and its explicit pads (never the extra end region ceil_mode opens).
"""
from __future__ import annotations

from typing import Sequence

from tvm import te, tirx

from convc.ir import Node, Op
from convc.ir.ops.pool import PoolAttrs
from convc.lower.conv import pad_spatial
from convc.lower.registry import Tables, lowering


def _end_pads(node: Node, x: te.Tensor) -> list[int]:
    a: PoolAttrs = node.attrs
    return [max(0, (o - 1) * s + d * (k - 1) + 1 - i - pb)
            for o, s, d, k, i, pb in zip(node.output.shape[2:], a.strides, a.dilations, a.kernel,
                                        (int(v) for v in x.shape[2:]), a.pads_begin)]


def _window(node: Node, x: te.Tensor, fill: float):
    a: PoolAttrs = node.attrs
    xp = pad_spatial(x, a.pads_begin, _end_pads(node, x), fill)
    taps = [te.reduce_axis((0, k), name=f"rk{i}") for i, k in enumerate(a.kernel)]

    def read(n, c, *o):
        return xp[(n, c, *(oi * s + t * d for oi, s, t, d in zip(o, a.strides, taps, a.dilations)))]
    return read, taps


@lowering(Op.MAX_POOL)
def _max_pool(node: Node, inputs: Sequence[te.Tensor], tables: Tables) -> te.Tensor:
    (x,) = inputs
    read, taps = _window(node, x, float("-inf"))
    return te.compute(node.output.shape, lambda *i: te.max(read(*i), axis=taps), name="max_pool")


def _count(a: PoolAttrs, axis: int, size: int, o) -> object:
    """Counted taps of output position ``o`` along one spatial axis (a sum of k indicators)."""
    lo, hi = (-a.pads_begin[axis], size + a.pads_end[axis]) if a.count_include_pad else (0, size)
    start = o * a.strides[axis] - a.pads_begin[axis]
    return sum(tirx.Select(tirx.all(start + t * a.dilations[axis] >= lo, start + t * a.dilations[axis] < hi),
                           1, 0) for t in range(a.kernel[axis]))


@lowering(Op.AVG_POOL)
def _avg_pool(node: Node, inputs: Sequence[te.Tensor], tables: Tables) -> te.Tensor:
    (x,) = inputs
    a: PoolAttrs = node.attrs
    read, taps = _window(node, x, 0.0)
    total = te.compute(node.output.shape, lambda *i: te.sum(read(*i), axis=taps), name="pool_sum")
    sizes = [int(v) for v in x.shape[2:]]

    def mean(n, c, *o):
        count = tirx.max(_product([_count(a, ax, sizes[ax], oi) for ax, oi in enumerate(o)]), 1)
        return total[(n, c, *o)] / count.astype(x.dtype)
    return te.compute(node.output.shape, mean, name="avg_pool")


def _product(terms: list) -> object:
    result = terms[0]
    for term in terms[1:]:
        result = result * term
    return result

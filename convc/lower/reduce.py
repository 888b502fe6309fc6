"""Reductions over axes: sum, prod, max, min and mean (a sum divided by the count)."""
from __future__ import annotations

from typing import Callable, Sequence

from tvm import te, tirx

from convc.ir import Node, Op
from convc.lower.registry import Tables, lowering

_prod = te.comm_reducer(lambda a, b: a * b, lambda t: tirx.const(1, t), name="prod")

_REDUCERS: dict[Op, Callable] = {
    Op.REDUCE_SUM: te.sum,
    Op.REDUCE_MEAN: te.sum,
    Op.REDUCE_PROD: _prod,
    Op.REDUCE_MAX: te.max,
    Op.REDUCE_MIN: te.min,
}


@lowering(*_REDUCERS)
def _reduce(node: Node, inputs: Sequence[te.Tensor], tables: Tables) -> te.Tensor:
    (x,) = inputs
    axes, keep = node.attrs.axes, node.attrs.keepdims
    reduced = {a: te.reduce_axis((0, int(x.shape[a])), name=f"r{a}") for a in axes}
    reducer = _REDUCERS[node.op]

    def source(out_index):
        it = iter(out_index)
        index = []
        for axis in range(len(x.shape)):
            if axis in reduced:
                index.append(reduced[axis])
                if keep:
                    next(it)
            else:
                index.append(next(it))
        return x[tuple(index)]
    y = te.compute(node.output.shape, lambda *i: reducer(source(i), axis=list(reduced.values())),
                   name=str(node.op))
    if node.op is not Op.REDUCE_MEAN:
        return y
    count = 1
    for a in axes:
        count *= int(x.shape[a])
    integer = "int" in str(x.dtype)
    if count == 0:  # the mean of nothing: NaN, as in NumPy (0 for integers, which have no NaN)
        nothing = tirx.const(0 if integer else float("nan"), x.dtype)
        return te.compute(y.shape, lambda *i: nothing, name="mean")
    div = tirx.truncdiv if integer else (lambda s, c: s / c)
    return te.compute(y.shape, lambda *i: div(y[i], tirx.const(count, x.dtype)), name="mean")

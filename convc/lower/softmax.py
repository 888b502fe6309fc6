"""Softmax along one axis: max, exp of the shifted input, sum, divide."""
from __future__ import annotations

from typing import Sequence

from tvm import te, tirx

from convc.ir import Node, Op
from convc.lower.registry import Tables, lowering


@lowering(Op.SOFTMAX)
def _softmax(node: Node, inputs: Sequence[te.Tensor], tables: Tables) -> te.Tensor:
    (x,) = inputs
    axis = node.attrs.axis
    shape = [int(d) for d in x.shape]
    reduced_shape = shape[:axis] + shape[axis + 1:]

    def at(index, k):
        return tuple(index[:axis]) + (k,) + tuple(index[axis:])
    k_max = te.reduce_axis((0, shape[axis]), name="k_max")
    top = te.compute(reduced_shape, lambda *i: te.max(x[at(i, k_max)], axis=k_max), name="softmax_max")
    e = te.compute(shape, lambda *i: tirx.exp(x[i] - top[i[:axis] + i[axis + 1:]]), name="softmax_exp")
    k_sum = te.reduce_axis((0, shape[axis]), name="k_sum")
    total = te.compute(reduced_shape, lambda *i: te.sum(e[at(i, k_sum)], axis=k_sum), name="softmax_sum")
    return te.compute(shape, lambda *i: e[i] / total[i[:axis] + i[axis + 1:]], name="softmax")

"""Resize as one separable interpolation per resized axis, reading the IR's axis tables.

Each non-identity axis becomes a stage ``y[.., j, ..] = sum_t x[.., index[j, t], ..] *
weight[j, t]`` (or the extrapolation value where ``valid[j]`` is false); the tables come
from ``convc.ir.ops.resize.axis_table`` and travel into the kernel as constants.
"""
from __future__ import annotations

from typing import Sequence

from tvm import te, tirx

from convc.ir import Node, Op
from convc.ir.ops.resize import axis_table
from convc.lower.registry import Tables, lowering


def _resize_axis(x: te.Tensor, axis: int, size_out: int, index: te.Tensor, weight: te.Tensor,
                 valid: te.Tensor, extrapolation: float) -> te.Tensor:
    shape = [int(d) for d in x.shape]
    shape[axis] = size_out
    taps = int(index.shape[1])

    def body(*i):
        j = i[axis]
        total = sum(x[i[:axis] + (index[j, t],) + i[axis + 1:]] * weight[j, t] for t in range(taps))
        return tirx.Select(valid[j] != 0, total, tirx.const(extrapolation, x.dtype))
    return te.compute(shape, body, name=f"resize{axis}")


@lowering(Op.RESIZE)
def _resize(node: Node, inputs: Sequence[te.Tensor], tables: Tables) -> te.Tensor:
    (y,) = inputs
    for axis, size_in in enumerate(node.inputs[0].shape):
        table = axis_table(node.attrs, axis, size_in)
        if table.is_identity(size_in):
            continue
        index = tables.add(table.index.astype("int32"), "index")
        weight = tables.add(table.weight.astype(str(y.dtype)), "weight")
        valid = tables.add(table.valid.astype("int8"), "valid")
        y = _resize_axis(y, axis, node.attrs.shape[axis], index, weight, valid, node.attrs.extrapolation_value)
    return y  # the input itself when every axis is an identity: the caller copies it

"""Data movement: reshape, transpose, broadcast, concat, slice (any step sign), pad (all modes), gather.

A reshape is normally a Relax ``reshape`` (a view, see ``convc.lower.module``); its kernel
here is for the shapes a Relax reshape misreads: a 0 in the new shape means "keep the
input's dimension" to Relax, so a reshape to a zero-size shape needs a kernel.
"""
from __future__ import annotations

from typing import Callable, Sequence

from tvm import te, tirx, topi

from convc.ir import Node, Op
from convc.ir.ops.movement import PadMode
from convc.lower.broadcast import broadcast_read
from convc.lower.registry import Tables, lowering


@lowering(Op.RESHAPE)
def _reshape(node: Node, inputs: Sequence[te.Tensor], tables: Tables) -> te.Tensor:
    return topi.reshape(inputs[0], list(node.attrs.shape))


@lowering(Op.TRANSPOSE)
def _transpose(node: Node, inputs: Sequence[te.Tensor], tables: Tables) -> te.Tensor:
    return topi.transpose(inputs[0], list(node.attrs.perm))


@lowering(Op.BROADCAST_TO)
def _broadcast_to(node: Node, inputs: Sequence[te.Tensor], tables: Tables) -> te.Tensor:
    (x,) = inputs
    return te.compute(node.output.shape, lambda *i: broadcast_read(x, i), name="broadcast_to")


@lowering(Op.CONCAT)
def _concat(node: Node, inputs: Sequence[te.Tensor], tables: Tables) -> te.Tensor:
    return topi.concatenate(list(inputs), axis=node.attrs.axis)


@lowering(Op.INTERLEAVE)
def _interleave(node: Node, inputs: Sequence[te.Tensor], tables: Tables) -> te.Tensor:
    """Each output element reads the phase its position falls in (see ``InterleaveAttrs``).

    The phase depends on the position only, so with one input per phase the read is a
    select between the phases at the same channel (whole vectors of channels in the
    blocked layout); a single input holding every phase is read at ``phase * M + c``.
    """
    a = node.attrs
    channels = [int(t.shape[1]) for t in inputs]
    m = node.output.shape[1]

    def element(n, c, *o):
        rows = [(oi + b) // s for oi, b, s in zip(o, a.starts, a.strides)]
        phase = 0
        for oi, b, s in zip(o, a.starts, a.strides):
            phase = phase * s + (oi + b) % s
        if len(inputs) == 1:
            return inputs[0][(n, phase * m + c, *rows)]
        if all(count == m for count in channels):
            value = inputs[0][(n, c, *rows)]
            for k, t in enumerate(inputs[1:], start=1):
                value = tirx.Select(phase == k, t[(n, c, *rows)], value)
            return value
        channel, value, offset = phase * m + c, None, 0
        for t, count in zip(inputs, channels):  # the last input starting at or below that channel holds it
            read = t[(n, tirx.max(tirx.min(channel - offset, count - 1), 0), *rows)]
            value = read if value is None else tirx.Select(channel >= offset, read, value)
            offset += count
        return value
    return te.compute(node.output.shape, element, name="interleave")


@lowering(Op.SLICE)
def _slice(node: Node, inputs: Sequence[te.Tensor], tables: Tables) -> te.Tensor:
    (x,) = inputs
    a = node.attrs
    return te.compute(node.output.shape,
                      lambda *i: x[tuple(b + j * s for j, b, s in zip(i, a.starts, a.steps))], name="slice")


# mode -> f(j, size) mapping a source index j (may lie outside [0, size)) back into the tensor
_SOURCE: dict[PadMode, Callable] = {
    PadMode.EDGE: lambda j, d: tirx.min(tirx.max(j, 0), d - 1),
    PadMode.WRAP: lambda j, d: tirx.floormod(j, d),
    PadMode.REFLECT: lambda j, d: tirx.Select(j < 0, -j, tirx.Select(j >= d, 2 * (d - 1) - j, j)),
}


@lowering(Op.PAD)
def _pad(node: Node, inputs: Sequence[te.Tensor], tables: Tables) -> te.Tensor:
    (x,) = inputs
    a = node.attrs
    dims = [int(d) for d in x.shape]
    if a.mode is PadMode.CONSTANT:
        def body(*i):
            inside = tirx.all(*[tirx.all(j >= b, j < b + d) for j, b, d in zip(i, a.pads_begin, dims)])
            src = tuple(j - b for j, b in zip(i, a.pads_begin))
            return tirx.if_then_else(inside, x[src], tirx.const(a.value, x.dtype))
    else:
        source = _SOURCE[a.mode]

        def body(*i):
            return x[tuple(source(j - b, d) if b or e else j
                           for j, b, e, d in zip(i, a.pads_begin, a.pads_end, dims))]
    return te.compute(node.output.shape, body, name="pad")


@lowering(Op.GATHER)
def _gather(node: Node, inputs: Sequence[te.Tensor], tables: Tables) -> te.Tensor:
    data, indices = inputs
    axis, k = node.attrs.axis, len(indices.shape)

    def body(*i):
        picked = indices[tuple(i[axis:axis + k])].astype("int64")
        return data[(*i[:axis], picked, *i[axis + k:])]
    return te.compute(node.output.shape, body, name="gather")

"""N-d convolution as a TE compute, written once for 1-D, 2-D and 3-D.

Layouts (ONNX): data ``(N, C, D1..Dn)``, weight ``(M, C/g, K1..Kn)``, optional bias
``(M,)``, output ``(N, M, O1..On)`` with ``O = (D + pb + pe - d*(K-1) - 1) // s + 1``.
Cross-correlation, no kernel flip. Output channel ``m`` belongs to group
``m // (M/g)`` and reads input channels ``group*(C/g) .. group*(C/g) + C/g - 1``.
The bias and the fused epilogue (activations, residual adds; see ``EpilogueStep``)
form one spatial block after the reduction, which the schedule computes at the conv's
register tile.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from tvm import te, tirx

from convc.ir import ConvAttrs, Node, Op
from convc.ir.ops.conv import EpilogueStep
from convc.ir.ops.conv import split_conv_inputs
from convc.lower.broadcast import broadcast_read
from convc.lower.elementwise import BINARY, UNARY
from convc.lower.registry import Tables, lowering

PAD_BLOCK = "pad"
CONV_BLOCK = "conv"
EPILOGUE_BLOCK = "epilogue"


def pad_spatial(x: te.Tensor, pads_begin: Sequence[int], pads_end: Sequence[int], value) -> te.Tensor:
    """``x`` with its spatial axes (2..) padded by ``value``; ``x`` itself when no pad is needed."""
    if not any(pads_begin) and not any(pads_end):
        return x
    shape = list(x.shape[:2]) + [d + b + e for d, b, e in zip(x.shape[2:], pads_begin, pads_end)]

    def padded(*idx):
        spatial = idx[2:]
        inside = [tirx.all(i >= b, i < b + d) for i, b, d in zip(spatial, pads_begin, x.shape[2:])]
        src = list(idx[:2]) + [i - b for i, b in zip(spatial, pads_begin)]
        return tirx.if_then_else(tirx.all(*inside), x[tuple(src)], tirx.const(value, x.dtype))
    return te.compute(shape, padded, name=PAD_BLOCK)


def conv_nd(x: te.Tensor, w: te.Tensor, bias: te.Tensor | None, attrs: ConvAttrs,
            out_shape: Sequence[int], operands: Sequence[te.Tensor] = ()) -> te.Tensor:
    """Grouped, strided, dilated N-d convolution, then bias and epilogue (see the module docstring)."""
    xp = pad_spatial(x, attrs.pads_begin, attrs.pads_end, 0.0)
    m_per_group = int(w.shape[0]) // attrs.groups
    c_per_group = int(w.shape[1])
    rc = te.reduce_axis((0, c_per_group), name="rc")
    rk = [te.reduce_axis((0, int(k)), name=f"rk{i}") for i, k in enumerate(w.shape[2:])]

    def body(n, m, *o):
        channel = (m // m_per_group) * c_per_group + rc if attrs.groups > 1 else rc
        pos = [oi * s + r * d for oi, s, r, d in zip(o, attrs.strides, rk, attrs.dilations)]
        return te.sum(xp[(n, channel, *pos)] * w[(m, rc, *rk)], axis=[rc, *rk])
    y = te.compute(tuple(out_shape), body, name=CONV_BLOCK)
    if bias is None and not attrs.epilogue:
        return y

    def epilogue(*i):
        value = y[i] if bias is None else y[i] + bias[i[1]]
        return apply_epilogue(attrs.epilogue, value, (broadcast_read(t, i) for t in operands))
    return te.compute(y.shape, epilogue, name=EPILOGUE_BLOCK)


def apply_epilogue(steps: Sequence[EpilogueStep], value, operand_values: Iterable):
    """``value`` through a conv's fused ``steps`` (``ConvAttrs.epilogue``); the binary steps
    take their second operand from ``operand_values``, in order."""
    pending = iter(operand_values)
    for step in steps:
        value = BINARY[step.op](value, next(pending)) if step.binary else UNARY[step.op](step.attrs, value)
    return value


@lowering(Op.CONV)
def _conv(node: Node, inputs: Sequence[te.Tensor], tables: Tables) -> te.Tensor:
    (x, w, *bias), operands = split_conv_inputs(node.attrs, inputs)
    return conv_nd(x, w, bias[0] if bias else None, node.attrs, node.output.shape, operands)

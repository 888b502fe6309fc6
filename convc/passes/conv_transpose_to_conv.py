"""Transposed convolution as a stride-1 convolution over a zero-inserted input.

For each spatial axis with input size i, kernel k, stride s, dilation d, pads pb/pe and
output_padding op (layouts as in ``convc.ir.ops.conv``):

1. zero insertion: put s-1 zeros after every input element. In IR ops: reshape
   (N, C, i1, ..., in) to (N, C, i1, 1, ..., in, 1), pad each unit axis with s-1 zeros at
   its end, reshape to (N, C, i1*s1, ...). That leaves s-1 trailing zeros after the
   last element, which count towards the end padding below.
2. padding: d*(k-1) - pb before and d*(k-1) - pe + op after the (s*(i-1)+1)-long
   zero-inserted data. The non-negative part goes into the conv's pads; a negative
   part crops the data (one slice).
3. kernel: (C, M/g, k...) -> swap the channel axes per group -> (M, C/g, k...) and flip
   every spatial axis. Emitted as reshape/transpose/slice, which fold when the weight
   is a constant.
4. a stride-1 conv with the same dilation and groups, and the bias carried over.

Output position s*i_x + d*t - pb receives x[i_x] * w[t], which is the transposed
conv's scatter definition; the output size is s*(i-1) + op + d*(k-1) + 1 - pb - pe.
"""
from __future__ import annotations

import numpy as np

from convc.ir import ConvAttrs, ConvTransposeAttrs, Node, Op, Value
from convc.ir.ops.movement import BroadcastToAttrs, PadAttrs, PadMode, ReshapeAttrs, SliceAttrs, TransposeAttrs
from convc.passes.rewrite import Rewriter, Rule, rule_pass


def _insert_zeros(ctx: Rewriter, x: Value, strides: tuple[int, ...]) -> Value:
    """(N, C, i...) -> (N, C, i*s...): each element followed by s-1 zeros."""
    if all(s == 1 for s in strides):
        return x
    n, c, *sizes = x.shape
    split = [n, c]
    for i, s in zip(sizes, strides):
        split += [i, 1] if s > 1 else [i]
    y = ctx.emit(Op.RESHAPE, [x], ReshapeAttrs(tuple(split)))
    ends = [0, 0]
    for s in strides:
        ends += [0, s - 1] if s > 1 else [0]
    y = ctx.emit(Op.PAD, [y], PadAttrs(PadMode.CONSTANT, (0,) * len(ends), tuple(ends)))
    return ctx.emit(Op.RESHAPE, [y], ReshapeAttrs((n, c, *(i * s for i, s in zip(sizes, strides)))))


def _conv_kernel(ctx: Rewriter, w: Value, groups: int) -> Value:
    """Transposed-conv weight (C, M/g, k...) -> conv weight (M, C/g, k...), flipped spatially."""
    c, mg, *ks = w.shape
    w = ctx.emit(Op.RESHAPE, [w], ReshapeAttrs((groups, c // groups, mg, *ks)))
    w = ctx.emit(Op.TRANSPOSE, [w], TransposeAttrs((0, 2, 1, *range(3, 3 + len(ks)))))
    w = ctx.emit(Op.RESHAPE, [w], ReshapeAttrs((groups * mg, c // groups, *ks)))
    flip = SliceAttrs((0, 0, *(k - 1 for k in ks)), (groups * mg, c // groups, *(-1 for _ in ks)),
                      (1, 1, *(-1 for _ in ks)))
    return ctx.emit(Op.SLICE, [w], flip)


def _bias_only(ctx: Rewriter, node: Node, bias: list[Value]) -> Value:
    """The output when the crop leaves no data: every window sees zeros only."""
    out = node.output.type
    if bias:
        b = ctx.emit(Op.RESHAPE, bias, ReshapeAttrs((1, out.shape[1]) + (1,) * (out.rank - 2)))
    else:
        b = ctx.constant(np.zeros((1,) * out.rank, dtype=out.dtype), "zeros")
    return ctx.emit(Op.BROADCAST_TO, [b], BroadcastToAttrs(out.shape))


def to_conv(ctx: Rewriter, node: Node) -> tuple[Value]:
    x, w, *bias = ctx.inputs(node)
    a: ConvTransposeAttrs = node.attrs
    ks = w.shape[2:]
    z = _insert_zeros(ctx, x, a.strides)
    # padding relative to the zero-inserted data with its s-1 trailing zeros
    begin = [d * (k - 1) - pb for k, d, pb in zip(ks, a.dilations, a.pads_begin)]
    end = [d * (k - 1) - pe + op - (s - 1)
           for k, d, pe, op, s in zip(ks, a.dilations, a.pads_end, a.output_padding, a.strides)]
    starts = [max(-p, 0) for p in begin]
    stops = [size + min(p, 0) for size, p in zip(z.shape[2:], end)]
    if any(stop <= start for start, stop in zip(starts, stops)):
        return (_bias_only(ctx, node, bias),)
    if any(starts) or any(stop != size for stop, size in zip(stops, z.shape[2:])):
        crop = SliceAttrs((0, 0, *starts), (*z.shape[:2], *stops), (1,) * z.type.rank)
        z = ctx.emit(Op.SLICE, [z], crop)
    conv = ConvAttrs(strides=(1,) * len(ks), pads_begin=tuple(max(p, 0) for p in begin),
                     pads_end=tuple(max(p, 0) for p in end), dilations=a.dilations, groups=a.groups)
    return (ctx.emit(Op.CONV, [z, _conv_kernel(ctx, w, a.groups), *bias], conv),)


RULES = (Rule("conv_transpose_as_zero_inserted_conv", frozenset({Op.CONV_TRANSPOSE}), to_conv,
              "the backend lowers one heavy op, conv; zero insertion + flipped kernel makes the adjoint a conv"),)

PASS = rule_pass("conv_transpose_to_conv", "transposed convs become stride-1 convs over zero-inserted inputs",
                 RULES)

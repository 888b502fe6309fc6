"""A conv over an input of a single position is a matrix product.

When every spatial size of the input is 1, output position ``o`` (per axis) reads input
position ``o*s + k*d - pb``, which is the real one only for the tap ``k = (pb - o*s) / d``
when that is a whole number in ``[0, K)``; every other tap multiplies padding. So the conv
is a 1x1 conv with ``M * P`` output channels (``P`` output positions), channel ``m*P + o``
holding the tap of ``o`` of filter ``m`` (zeros where no tap reaches), then a reshape to
``(N, M, *O)``. Groups keep their meaning: the channels of filter ``m`` stay in its group.

This is the first layer of generators like DCGAN's (a transposed conv of a latent vector,
a 4x4 kernel over 1x1): its zero-insertion form multiplies every padded tap, 16 times the
real work. The pass runs after ``fold_batchnorm`` (a batch norm folds into the conv before
the reshape separates them) and before ``fuse_epilogue``.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from convc.ir import ConvAttrs, Node, Op, Value
from convc.ir.ops.movement import ReshapeAttrs
from convc.passes.rewrite import Rewriter, Rule, rule_pass


def tap_of(o: int, stride: int, dilation: int, pad_begin: int, kernel: int) -> int | None:
    """The kernel tap output position ``o`` reads the single input position with, if any."""
    offset = pad_begin - o * stride
    if offset % dilation:
        return None
    k = offset // dilation
    return k if 0 <= k < kernel else None


def expanded_weight(w: np.ndarray, attrs: ConvAttrs, out_size: tuple[int, ...]) -> np.ndarray:
    """The ``(M*P, C/g, 1, ...)`` weight of the equivalent 1x1 conv (see the module docstring)."""
    m, cpg, *kernel = w.shape
    taps = [[tap_of(o, s, d, pb, k) for o in range(size)]
            for size, s, d, pb, k in zip(out_size, attrs.strides, attrs.dilations, attrs.pads_begin, kernel)]
    out = np.zeros((m, math.prod(out_size), cpg), w.dtype)
    for flat, position in enumerate(itertools.product(*(range(size) for size in out_size))):
        tap = tuple(axis_taps[o] for axis_taps, o in zip(taps, position))
        if None not in tap:
            out[:, flat, :] = w[(slice(None), slice(None), *tap)]
    return out.reshape(m * math.prod(out_size), cpg, *(1,) * len(kernel))


def as_matrix_product(ctx: Rewriter, node: Node) -> tuple[Value] | None:
    attrs: ConvAttrs = node.attrs
    x, w, *bias = ctx.inputs(node)
    weight = ctx.const(w)
    if attrs.epilogue or weight is None or (bias and ctx.const(bias[0]) is None):
        return None
    out_size = node.output.shape[2:]
    if any(d != 1 for d in x.shape[2:]) or math.prod(weight.shape[2:]) == 1:
        return None
    positions = math.prod(out_size)
    inputs = [x, ctx.constant(expanded_weight(weight, attrs, out_size), "weight")]
    if bias:
        inputs.append(ctx.constant(np.repeat(ctx.const(bias[0]), positions), "bias"))
    n = attrs.ndim
    flat = ctx.emit(Op.CONV, inputs, ConvAttrs((1,) * n, (0,) * n, (0,) * n, (1,) * n, attrs.groups))
    return (ctx.emit(Op.RESHAPE, [flat], ReshapeAttrs(node.output.shape)),)


RULES = (Rule("single_position_conv_as_matrix_product", frozenset({Op.CONV}), as_matrix_product,
              "a conv of a 1x1 input reads one tap per output position: a 1x1 conv with a channel per "
              "position, without multiplying the padding"),)

PASS = rule_pass("single_position", "convs over a single input position become 1x1 convs and a reshape", RULES)

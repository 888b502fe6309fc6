"""Fold inference-time batch normalisation into the convolution before it.

batch_norm(x) = a * x + b per channel, with a = scale / sqrt(var + eps) and
b = bias - a * mean. When ``x`` is a conv's output read by nothing else, the conv
absorbs it: weights scaled by ``a`` per output channel, bias ``a * conv_bias + b``.
Otherwise the batch norm becomes ``x * a + b`` with per-channel constant operands.
The arithmetic is emitted as IR ops, so it folds to constants when the parameters are
constants and stays as nodes when they are not.
"""
from __future__ import annotations

import numpy as np

from convc.ir import Node, Op, Value
from convc.ir.ops.movement import ReshapeAttrs
from convc.passes.rewrite import Rewriter, Rule, rule_pass


def _scale_shift(ctx: Rewriter, node: Node) -> tuple[Value, Value]:
    """Values of shape (C,): the per-channel a and b of the batch norm."""
    _, scale, bias, mean, var = ctx.inputs(node)
    eps = ctx.constant(np.array(node.attrs.epsilon, dtype=var.dtype), "epsilon")
    a = ctx.emit(Op.DIV, [scale, ctx.emit(Op.SQRT, [ctx.emit(Op.ADD, [var, eps])])])
    b = ctx.emit(Op.SUB, [bias, ctx.emit(Op.MUL, [a, mean])])
    return a, b


def _channel_shaped(ctx: Rewriter, value: Value, rank: int, axis: int) -> Value:
    """Reshape a (C,) value to broadcast along ``axis`` of a rank-``rank`` tensor."""
    shape = [1] * rank
    shape[axis] = value.shape[0]
    return ctx.emit(Op.RESHAPE, [value], ReshapeAttrs(tuple(shape)))


def into_conv(ctx: Rewriter, node: Node) -> tuple[Value] | None:
    x = ctx.inputs(node)[0]
    conv = ctx.producer(x)
    if conv is None or conv.op is not Op.CONV or conv.attrs.epilogue or not ctx.sole_user(x, node):
        return None  # (an epilogue may be nonlinear: scaling the weights would not commute with it)
    a, b = _scale_shift(ctx, node)
    data, weight, *conv_bias = conv.inputs
    weight = ctx.emit(Op.MUL, [weight, _channel_shaped(ctx, a, weight.type.rank, 0)], source=conv)
    bias = ctx.emit(Op.ADD, [ctx.emit(Op.MUL, [conv_bias[0], a]), b]) if conv_bias else b
    return (ctx.emit(Op.CONV, [data, weight, bias], conv.attrs, source=conv),)


def into_mul_add(ctx: Rewriter, node: Node) -> tuple[Value]:
    x = ctx.inputs(node)[0]
    a, b = _scale_shift(ctx, node)
    y = ctx.emit(Op.MUL, [x, _channel_shaped(ctx, a, x.type.rank, 1)])
    return (ctx.emit(Op.ADD, [y, _channel_shaped(ctx, b, x.type.rank, 1)]),)


RULES = (
    Rule("batch_norm_into_conv", frozenset({Op.BATCH_NORM}), into_conv,
         "a conv followed by an affine per-channel map is a conv with scaled weights: zero extra work"),
    Rule("batch_norm_to_mul_add", frozenset({Op.BATCH_NORM}), into_mul_add,
         "elsewhere batch norm is a per-channel scale and shift, which the epilogue fusion can absorb"),
)

PASS = rule_pass("fold_batchnorm", "the backend has no batch norm: fold it into convs or a mul + add", RULES)

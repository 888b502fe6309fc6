"""Tidy-ups that the other rewrites leave behind: collapse chains, drop identities, fold FC biases."""
from __future__ import annotations

from convc.ir import Node, Op, Value
from convc.ir.ops.movement import ReshapeAttrs, TransposeAttrs
from convc.passes.rewrite import Rewriter, Rule, rule_pass


def _input(ctx: Rewriter, node: Node) -> Value:
    return ctx.inputs(node)[0]


# op -> whether (attrs, input) makes it the identity, given that its output type equals the input's
_IS_IDENTITY = {
    Op.RESHAPE: lambda a, x: True,  # same type means same shape
    Op.TRANSPOSE: lambda a, x: a.perm == tuple(range(x.type.rank)),
    Op.BROADCAST_TO: lambda a, x: True,
    Op.SLICE: lambda a, x: a.starts == (0,) * x.type.rank and a.steps == (1,) * x.type.rank,
    Op.PAD: lambda a, x: not any(a.pads_begin + a.pads_end),
}


def identity(ctx: Rewriter, node: Node) -> tuple[Value] | None:
    x = _input(ctx, node)
    return (x,) if x.type == node.output.type and _IS_IDENTITY[node.op](node.attrs, x) else None


def _emit(ctx: Rewriter, op: Op, x: Value, attrs) -> tuple[Value]:
    """``op(x)``, or ``x`` itself when that is the identity (a collapsed chain may be one)."""
    (out,) = ctx.node.outputs
    return (x,) if x.type == out.type and _IS_IDENTITY[op](attrs, x) else (ctx.emit(op, [x], attrs),)


def reshape_of_reshape(ctx: Rewriter, node: Node) -> tuple[Value] | None:
    inner = ctx.producer(_input(ctx, node))
    if inner is None or inner.op is not Op.RESHAPE:
        return None
    return _emit(ctx, Op.RESHAPE, inner.inputs[0], node.attrs)


def transpose_of_transpose(ctx: Rewriter, node: Node) -> tuple[Value] | None:
    inner = ctx.producer(_input(ctx, node))
    if inner is None or inner.op is not Op.TRANSPOSE:
        return None
    perm = tuple(inner.attrs.perm[p] for p in node.attrs.perm)
    return _emit(ctx, Op.TRANSPOSE, inner.inputs[0], TransposeAttrs(perm))


def bias_into_conv(ctx: Rewriter, node: Node) -> tuple[Value] | None:
    """reshape(conv(x) -> (N, M)) + c[M]  =>  reshape(conv(x) with bias + c): an FC layer's bias."""
    a, c = ctx.inputs(node)
    if ctx.const(a) is not None:
        a, c = c, a
    reshape = ctx.producer(a)
    if reshape is None or reshape.op is not Op.RESHAPE:
        return None
    conv = ctx.producer(reshape.inputs[0])  # (N, M, 1, ..., 1): the reshape keeps the size
    if (ctx.const(c) is None or conv is None or conv.op is not Op.CONV or conv.attrs.epilogue
            or a.type.rank != 2 or c.shape not in ((a.shape[1],), (1, a.shape[1]))
            or conv.output.shape[:2] != a.shape or not ctx.sole_user(a, node)
            or not ctx.sole_user(conv.output, reshape)):
        return None
    bias = ctx.emit(Op.RESHAPE, [c], ReshapeAttrs((a.shape[1],)))
    if len(conv.inputs) == 3:
        bias = ctx.emit(Op.ADD, [conv.inputs[2], bias])
    y = ctx.emit(Op.CONV, [*conv.inputs[:2], bias], conv.attrs, source=conv)
    return (ctx.emit(Op.RESHAPE, [y], reshape.attrs, source=reshape),)


RULES = (
    Rule("drop_identity", frozenset(_IS_IDENTITY), identity,
         "a reshape/transpose/broadcast/slice/pad that changes nothing is a copy"),
    Rule("reshape_of_reshape", frozenset({Op.RESHAPE}), reshape_of_reshape,
         "only the last of consecutive reshapes matters"),
    Rule("transpose_of_transpose", frozenset({Op.TRANSPOSE}), transpose_of_transpose,
         "consecutive transposes compose into one permutation"),
    Rule("bias_into_conv", frozenset({Op.ADD}), bias_into_conv,
         "a fully connected layer's bias, added after the reshape of its conv, is that conv's bias"),
)

PASS = rule_pass("simplify", "collapse reshape/transpose chains, drop identity movement ops, fold FC biases", RULES)

"""Tidy-ups that the other rewrites leave behind: collapse chains, drop identities."""
from __future__ import annotations

from convc.ir import Node, Op, Value
from convc.ir.ops.movement import TransposeAttrs
from convc.passes.rewrite import Rewriter, Rule, rule_pass


def _input(ctx: Rewriter, node: Node) -> Value:
    return ctx.inputs(node)[0]


def identity(ctx: Rewriter, node: Node) -> tuple[Value] | None:
    x = _input(ctx, node)
    return (x,) if x.type == node.output.type and _IS_IDENTITY[node.op](node.attrs, x) else None


_IS_IDENTITY = {
    Op.RESHAPE: lambda a, x: True,  # same type means same shape
    Op.TRANSPOSE: lambda a, x: a.perm == tuple(range(x.type.rank)),
    Op.BROADCAST_TO: lambda a, x: True,
    Op.SLICE: lambda a, x: a.starts == (0,) * x.type.rank and a.steps == (1,) * x.type.rank,
    Op.PAD: lambda a, x: not any(a.pads_begin + a.pads_end),
}


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


RULES = (
    Rule("drop_identity", frozenset(_IS_IDENTITY), identity,
         "a reshape/transpose/broadcast/slice/pad that changes nothing is a copy"),
    Rule("reshape_of_reshape", frozenset({Op.RESHAPE}), reshape_of_reshape,
         "only the last of consecutive reshapes matters"),
    Rule("transpose_of_transpose", frozenset({Op.TRANSPOSE}), transpose_of_transpose,
         "consecutive transposes compose into one permutation"),
)

PASS = rule_pass("simplify", "collapse reshape/transpose chains and drop identity movement ops", RULES)

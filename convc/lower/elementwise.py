"""Elementwise ops: activations, arithmetic and comparisons with broadcasting, cast, where,
and inference batch norm (normally folded into a conv by the passes)."""
from __future__ import annotations

from typing import Callable, Sequence

from tvm import te, tirx

from convc.ir import Node, Op
from convc.lower.broadcast import broadcast_read
from convc.lower.registry import Tables, lowering


def dtype_of(expr) -> str:
    """The dtype name of a TIR expression or a tensor element read."""
    return str(expr.dtype if isinstance(expr, te.TensorSlice) else expr.ty)


def _c(value: float, like):
    """``value`` as a constant of ``like``'s dtype (``like`` an expression)."""
    return tirx.const(value, dtype_of(like))


def _clip(x, lo: float, hi: float):
    if lo > float("-inf"):
        x = tirx.max(x, _c(lo, x))
    if hi < float("inf"):
        x = tirx.min(x, _c(hi, x))
    return x


def _hard_sigmoid(x, alpha: float, beta: float):
    return _clip(x * _c(alpha, x) + _c(beta, x), 0.0, 1.0)


def _cast(x, dtype: str):
    return x != _c(0, x) if dtype == "bool" and dtype_of(x) != "bool" else x.astype(dtype)


# op -> f(attrs, x) on scalar TIR expressions
UNARY: dict[Op, Callable] = {
    Op.RELU: lambda a, x: tirx.max(x, _c(0, x)),
    Op.LEAKY_RELU: lambda a, x: tirx.Select(x >= _c(0, x), x, x * _c(a.alpha, x)),
    Op.ELU: lambda a, x: tirx.Select(x > _c(0, x), x, _c(a.alpha, x) * (
        tirx.exp(tirx.min(x, _c(0, x))) - _c(1, x))),
    Op.SIGMOID: lambda a, x: _c(1, x) / (_c(1, x) + tirx.exp(-x)),
    Op.TANH: lambda a, x: tirx.tanh(x),
    Op.HARD_SIGMOID: lambda a, x: _hard_sigmoid(x, a.alpha, a.beta),
    Op.HARD_SWISH: lambda a, x: x * _hard_sigmoid(x, 1 / 6, 0.5),
    Op.CLIP: lambda a, x: _clip(x, a.min, a.max),
    Op.EXP: lambda a, x: tirx.exp(x),
    Op.LOG: lambda a, x: tirx.log(x),
    Op.SQRT: lambda a, x: tirx.sqrt(x),
    Op.NEG: lambda a, x: -x,
    Op.ABS: lambda a, x: tirx.abs(x),
    Op.RECIPROCAL: lambda a, x: _c(1, x) / x,
    Op.FLOOR: lambda a, x: tirx.floor(x),
    Op.CEIL: lambda a, x: tirx.ceil(x),
    Op.NOT: lambda a, x: tirx.Not(x),
    Op.CAST: lambda a, x: _cast(x, a.dtype),
}


def _div(a, b):
    return tirx.truncdiv(a, b) if "int" in dtype_of(a) else a / b


BINARY: dict[Op, Callable] = {
    Op.ADD: lambda a, b: a + b,
    Op.SUB: lambda a, b: a - b,
    Op.MUL: lambda a, b: a * b,
    Op.DIV: _div,
    Op.POW: lambda a, b: tirx.power(a, b.astype(dtype_of(a))),
    Op.MAXIMUM: tirx.max,
    Op.MINIMUM: tirx.min,
    Op.PRELU: lambda x, slope: tirx.Select(x >= _c(0, x), x, x * slope),
    Op.EQUAL: lambda a, b: a == b,
    Op.LESS: lambda a, b: a < b,
    Op.GREATER: lambda a, b: a > b,
    Op.AND: tirx.And,
    Op.OR: tirx.Or,
}


def _map(node: Node, inputs: Sequence[te.Tensor], fn: Callable) -> te.Tensor:
    shape = node.output.shape
    return te.compute(shape, lambda *i: fn(*(broadcast_read(t, i) for t in inputs)), name=str(node.op))


@lowering(*UNARY)
def _unary(node: Node, inputs: Sequence[te.Tensor], tables: Tables) -> te.Tensor:
    fn = UNARY[node.op]
    return _map(node, inputs, lambda x: fn(node.attrs, x))


@lowering(*BINARY)
def _binary(node: Node, inputs: Sequence[te.Tensor], tables: Tables) -> te.Tensor:
    return _map(node, inputs, BINARY[node.op])


@lowering(Op.WHERE)
def _where(node: Node, inputs: Sequence[te.Tensor], tables: Tables) -> te.Tensor:
    return _map(node, inputs, tirx.Select)


@lowering(Op.BATCH_NORM)
def _batch_norm(node: Node, inputs: Sequence[te.Tensor], tables: Tables) -> te.Tensor:
    x, scale, bias, mean, var = inputs
    eps = tirx.const(node.attrs.epsilon, x.dtype)

    def body(n, c, *rest):
        a = scale[c] / tirx.sqrt(var[c] + eps)
        return (x[(n, c, *rest)] - mean[c]) * a + bias[c]
    return te.compute(x.shape, body, name="batch_norm")

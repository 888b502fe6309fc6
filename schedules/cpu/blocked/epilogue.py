"""The fused epilogue in TE: bias, unary activations and residual operands.

Each unary IR op that may follow a conv has one rule here (attrs, x) -> expr; binary
steps read the conv's next operand (see ``layout`` for its physical form).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

from tvm import te, tirx
from tvm.ir.expr import Expr

from convc.ir import Op
from convc.ir.ops.conv import EpilogueStep
from convc.schedules.cpu.blocked.layout import Channel, load


Const = Callable[[float], Expr]  # a float constant of the conv's dtype


def _hard_sigmoid(x, c: Const, alpha: float, beta: float):
    return tirx.max(tirx.min(x * c(alpha) + c(beta), c(1.0)), c(0.0))


def _clip(a, x, c: Const):
    if not math.isinf(a.min):
        x = tirx.max(x, c(a.min))
    if not math.isinf(a.max):
        x = tirx.min(x, c(a.max))
    return x


UNARY: dict[Op, Callable[[object, Expr, Const], Expr]] = {
    Op.RELU: lambda a, x, c: tirx.max(x, c(0.0)),
    Op.LEAKY_RELU: lambda a, x, c: tirx.Select(x >= c(0.0), x, x * c(a.alpha)),
    Op.ELU: lambda a, x, c: tirx.Select(x > c(0.0), x,
                                     c(a.alpha) * (tirx.exp(tirx.min(x, c(0.0))) - c(1.0))),
    Op.SIGMOID: lambda a, x, c: tirx.sigmoid(x),
    Op.TANH: lambda a, x, c: tirx.tanh(x),
    Op.HARD_SIGMOID: lambda a, x, c: _hard_sigmoid(x, c, a.alpha, a.beta),
    Op.HARD_SWISH: lambda a, x, c: x * _hard_sigmoid(x, c, 1 / 6, 0.5),
    Op.CLIP: _clip,
    Op.EXP: lambda a, x, c: tirx.exp(x),
    Op.LOG: lambda a, x, c: tirx.log(x),
    Op.SQRT: lambda a, x, c: tirx.sqrt(x),
    Op.NEG: lambda a, x, c: -x,
    Op.ABS: lambda a, x, c: tirx.abs(x),
    Op.RECIPROCAL: lambda a, x, c: c(1.0) / x,
    Op.FLOOR: lambda a, x, c: tirx.floor(x),
    Op.CEIL: lambda a, x, c: tirx.ceil(x),
}

BINARY: dict[Op, Callable[[Expr, Expr], Expr]] = {
    Op.ADD: lambda x, y: x + y,
    Op.SUB: lambda x, y: x - y,
    Op.MUL: lambda x, y: x * y,
}


def unsupported_step(epilogue: Sequence[EpilogueStep]) -> str | None:
    """Why this epilogue cannot be fused here, or None when every step has a rule."""
    for step in epilogue:
        table = BINARY if step.binary else UNARY
        if step.op not in table:
            return f"epilogue step {step.op} has no fused rule"
    return None


def epilogue_stage(out_shape: Sequence[int], out_block: int, acc: Callable, bias: te.Tensor | None,
                   operands: Sequence[te.Tensor], epilogue: Sequence[EpilogueStep],
                   dtype: str, name: str = "out") -> te.Tensor:
    """The output tensor (physical, ``out_block``): epilogue(acc + bias) at every element.

    ``acc(n, channel, spatial)`` reads the accumulated conv at a logical position
    (``channel`` a ``layout.Channel``).
    """
    def const(value: float) -> Expr:
        return tirx.const(value, dtype)

    def body(*idx):
        if out_block:
            n, cb, *spatial, ci = idx
            channel = Channel(cb, ci, out_block)
        else:
            n, c, *spatial = idx
            channel = Channel(c)
        y = acc(n, channel, spatial)
        if bias is not None:
            y = y + bias[channel.logical]
        pending = iter(operands)
        for step in epilogue:
            if step.binary:
                y = BINARY[step.op](y, load(next(pending), out_block, n, channel, spatial))
            else:
                y = UNARY[step.op](step.attrs, y, const)
        return y
    return te.compute(tuple(out_shape), body, name=name)

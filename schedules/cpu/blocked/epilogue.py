"""The fused epilogue in TE: bias, unary activations and residual operands.

Each unary IR op that may follow a conv has one rule here (attrs, x) -> expr; binary
steps read the conv's next operand (see ``layout`` for its physical form).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

from tvm import te, tirx

from convc.ir import Op
from convc.ir.ops.conv import EpilogueStep
from convc.schedules.cpu.blocked.layout import Channel, load


def _const(x: tirx.PrimExpr, value: float) -> tirx.PrimExpr:
    return tirx.const(value, x.dtype)


def _hard_sigmoid(x, alpha: float, beta: float):
    return tirx.max(tirx.min(x * _const(x, alpha) + _const(x, beta), _const(x, 1.0)), _const(x, 0.0))


def _clip(a, x):
    if not math.isinf(a.min):
        x = tirx.max(x, _const(x, a.min))
    if not math.isinf(a.max):
        x = tirx.min(x, _const(x, a.max))
    return x


UNARY: dict[Op, Callable[[object, tirx.PrimExpr], tirx.PrimExpr]] = {
    Op.RELU: lambda a, x: tirx.max(x, _const(x, 0.0)),
    Op.LEAKY_RELU: lambda a, x: tirx.Select(x >= _const(x, 0.0), x, x * _const(x, a.alpha)),
    Op.ELU: lambda a, x: tirx.Select(x > _const(x, 0.0), x,
                                     _const(x, a.alpha) * (tirx.exp(tirx.min(x, _const(x, 0.0))) - _const(x, 1.0))),
    Op.SIGMOID: lambda a, x: tirx.sigmoid(x),
    Op.TANH: lambda a, x: tirx.tanh(x),
    Op.HARD_SIGMOID: lambda a, x: _hard_sigmoid(x, a.alpha, a.beta),
    Op.HARD_SWISH: lambda a, x: x * _hard_sigmoid(x, 1 / 6, 0.5),
    Op.CLIP: _clip,
    Op.EXP: lambda a, x: tirx.exp(x),
    Op.LOG: lambda a, x: tirx.log(x),
    Op.SQRT: lambda a, x: tirx.sqrt(x),
    Op.NEG: lambda a, x: -x,
    Op.ABS: lambda a, x: tirx.abs(x),
    Op.RECIPROCAL: lambda a, x: _const(x, 1.0) / x,
    Op.FLOOR: lambda a, x: tirx.floor(x),
    Op.CEIL: lambda a, x: tirx.ceil(x),
}

BINARY: dict[Op, Callable[[tirx.PrimExpr, tirx.PrimExpr], tirx.PrimExpr]] = {
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
                   name: str = "out") -> te.Tensor:
    """The output tensor (physical, ``out_block``): epilogue(acc + bias) at every element.

    ``acc(n, channel, spatial)`` reads the accumulated conv at a logical position
    (``channel`` a ``layout.Channel``).
    """
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
                y = UNARY[step.op](step.attrs, y)
        return y
    return te.compute(tuple(out_shape), body, name=name)

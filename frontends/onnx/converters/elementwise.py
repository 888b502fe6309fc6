"""Elementwise ONNX ops: activations, arithmetic, comparisons, logic, Clip, Max/Min, Where."""
from __future__ import annotations

import numpy as np

from convc.frontends.onnx.context import Context
from convc.frontends.onnx.registry import converter
from convc.ir import Op
from convc.ir.ops.elementwise import AlphaAttrs, ClipAttrs, HardSigmoidAttrs

UNARY = {
    "Relu": Op.RELU, "Sigmoid": Op.SIGMOID, "Tanh": Op.TANH, "HardSwish": Op.HARD_SWISH,
    "Exp": Op.EXP, "Log": Op.LOG, "Sqrt": Op.SQRT, "Neg": Op.NEG, "Abs": Op.ABS,
    "Reciprocal": Op.RECIPROCAL, "Floor": Op.FLOOR, "Ceil": Op.CEIL, "Not": Op.NOT,
}
BINARY = {
    "Add": Op.ADD, "Sub": Op.SUB, "Mul": Op.MUL, "Div": Op.DIV, "Pow": Op.POW, "PRelu": Op.PRELU,
    "Equal": Op.EQUAL, "Less": Op.LESS, "Greater": Op.GREATER, "And": Op.AND, "Or": Op.OR,
}
VARIADIC = {"Max": Op.MAXIMUM, "Min": Op.MINIMUM}


def _unary(op: Op):
    return lambda ctx: ctx.emit(op, [ctx.input(0)])


def _binary(op: Op):
    return lambda ctx: ctx.emit(op, [ctx.input(0), ctx.input(1)])


def _variadic(op: Op):
    """Max/Min of any number of inputs: a left-to-right chain of binary ops."""
    def convert(ctx: Context):
        values = [v for v in ctx.inputs if v is not None]
        if not values:
            raise ctx.malformed("needs at least one input")
        result = values[0]
        for value in values[1:]:
            result = ctx.emit(op, [result, value])
        return result  # a lone input passes through unchanged
    return convert


for _name, _op in UNARY.items():
    converter(_name)(_unary(_op))
for _name, _op in BINARY.items():
    converter(_name)(_binary(_op))
for _name, _op in VARIADIC.items():
    converter(_name)(_variadic(_op))


@converter("LeakyRelu")
def leaky_relu(ctx: Context):
    return ctx.emit(Op.LEAKY_RELU, [ctx.input(0)], AlphaAttrs(ctx.attrs.float("alpha", 0.01)))


@converter("Elu")
def elu(ctx: Context):
    return ctx.emit(Op.ELU, [ctx.input(0)], AlphaAttrs(ctx.attrs.float("alpha", 1.0)))


@converter("HardSigmoid")
def hard_sigmoid(ctx: Context):
    return ctx.emit(Op.HARD_SIGMOID, [ctx.input(0)],
                    HardSigmoidAttrs(ctx.attrs.float("alpha", 0.2), ctx.attrs.float("beta", 0.5)))


@converter("Clip")
def clip(ctx: Context):
    """Clip-11+: min and max are optional constant inputs (omitted = unbounded)."""
    bounds = [ctx.optional_const(i, name) for i, name in ((1, "min"), (2, "max"))]
    for array, name in zip(bounds, ("min", "max")):
        if array is not None and array.size != 1:
            raise ctx.malformed(f"{name} must be a scalar, got shape {list(array.shape)}")
    low, high = (None if b is None else float(b.reshape(())) for b in bounds)
    return ctx.emit(Op.CLIP, [ctx.input(0)], ClipAttrs(-np.inf if low is None else low,
                                                       np.inf if high is None else high))


@converter("Where")
def where(ctx: Context):
    return ctx.emit(Op.WHERE, [ctx.input(0), ctx.input(1), ctx.input(2)])

"""Elementwise ops: activations, arithmetic with NumPy broadcasting, comparisons, cast.

Binary and ternary ops broadcast like NumPy (ONNX multidirectional broadcasting).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from convc.ir.op import NoAttrs, Op, OpDef, register
from convc.ir.ops._util import broadcast_shapes, require, same_dtype
from convc.ir.types import DTYPES, FLOAT_DTYPES, TensorType


@dataclass(frozen=True)
class AlphaAttrs:
    """One scalar parameter: the negative slope of leaky_relu, the scale of elu."""

    alpha: float


@dataclass(frozen=True)
class HardSigmoidAttrs:
    """y = max(0, min(1, alpha * x + beta))."""

    alpha: float = 0.2
    beta: float = 0.5


@dataclass(frozen=True)
class ClipAttrs:
    """y = min(max(x, min), max); infinite bounds mean no bound."""

    min: float = -np.inf
    max: float = np.inf


@dataclass(frozen=True)
class CastAttrs:
    """Convert to ``dtype`` (a NumPy dtype name)."""

    dtype: str

    def __post_init__(self):
        require(self.dtype in DTYPES, f"cast: unsupported target dtype {self.dtype!r}")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(x.dtype)


def _hard_sigmoid(x, alpha, beta):
    return np.clip(alpha * x + beta, 0, 1).astype(x.dtype)


# op -> (attrs type, f(attrs, x))
UNARY: dict[Op, tuple[type, Callable]] = {
    Op.RELU: (NoAttrs, lambda a, x: np.maximum(x, 0).astype(x.dtype)),
    Op.LEAKY_RELU: (AlphaAttrs, lambda a, x: np.where(x >= 0, x, a.alpha * x).astype(x.dtype)),
    Op.ELU: (AlphaAttrs, lambda a, x: np.where(x > 0, x, a.alpha * (np.exp(np.minimum(x, 0)) - 1)).astype(x.dtype)),
    Op.SIGMOID: (NoAttrs, lambda a, x: _sigmoid(x)),
    Op.TANH: (NoAttrs, lambda a, x: np.tanh(x)),
    Op.HARD_SIGMOID: (HardSigmoidAttrs, lambda a, x: _hard_sigmoid(x, a.alpha, a.beta)),
    Op.HARD_SWISH: (NoAttrs, lambda a, x: (x * _hard_sigmoid(x, 1 / 6, 0.5)).astype(x.dtype)),
    Op.CLIP: (ClipAttrs, lambda a, x: np.minimum(np.maximum(x, a.min), a.max).astype(x.dtype)),
    Op.EXP: (NoAttrs, lambda a, x: np.exp(x)),
    Op.LOG: (NoAttrs, lambda a, x: np.log(x)),
    Op.SQRT: (NoAttrs, lambda a, x: np.sqrt(x)),
    Op.NEG: (NoAttrs, lambda a, x: np.negative(x)),
    Op.ABS: (NoAttrs, lambda a, x: np.abs(x)),
    Op.RECIPROCAL: (NoAttrs, lambda a, x: np.reciprocal(x)),
    Op.FLOOR: (NoAttrs, lambda a, x: np.floor(x)),
    Op.CEIL: (NoAttrs, lambda a, x: np.ceil(x)),
    Op.NOT: (NoAttrs, lambda a, x: np.logical_not(x)),
    Op.CAST: (CastAttrs, lambda a, x: x.astype(a.dtype)),
}

FLOAT_ONLY = {Op.LEAKY_RELU, Op.ELU, Op.SIGMOID, Op.TANH, Op.HARD_SIGMOID, Op.HARD_SWISH,
              Op.EXP, Op.LOG, Op.SQRT, Op.RECIPROCAL, Op.FLOOR, Op.CEIL}


def _int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if np.issubdtype(a.dtype, np.integer):
        return np.trunc(a / b).astype(a.dtype)  # ONNX integer Div truncates toward zero
    return np.divide(a, b)


BINARY: dict[Op, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    Op.ADD: np.add,
    Op.SUB: np.subtract,
    Op.MUL: np.multiply,
    Op.DIV: _int_div,
    Op.POW: lambda a, b: np.power(a, b).astype(a.dtype),
    Op.MAXIMUM: np.maximum,
    Op.MINIMUM: np.minimum,
    Op.PRELU: lambda x, slope: np.where(x >= 0, x, x * slope).astype(x.dtype),
    Op.EQUAL: np.equal,
    Op.LESS: np.less,
    Op.GREATER: np.greater,
    Op.AND: np.logical_and,
    Op.OR: np.logical_or,
}

COMPARISONS = {Op.EQUAL, Op.LESS, Op.GREATER}
LOGICAL = {Op.AND, Op.OR, Op.NOT}


def _unary_infer(op: Op):
    def infer(attrs, types: Sequence[TensorType]) -> list[TensorType]:
        (x,) = types
        if op in FLOAT_ONLY:
            require(x.dtype in FLOAT_DTYPES, f"{op}: needs a float input, got {x}")
        if op in LOGICAL:
            require(x.dtype == "bool", f"{op}: needs a bool input, got {x}")
        dtype = attrs.dtype if op is Op.CAST else x.dtype
        return [TensorType(x.shape, dtype)]
    return infer


def _binary_infer(op: Op):
    def infer(attrs, types: Sequence[TensorType]) -> list[TensorType]:
        a, b = types
        shape = broadcast_shapes(str(op), a.shape, b.shape)
        if op is Op.POW:
            dtype = a.dtype  # ONNX Pow allows a differently typed exponent
        else:
            dtype = same_dtype(str(op), types)
        if op in LOGICAL:
            require(dtype == "bool", f"{op}: needs bool inputs, got {a} and {b}")
        return [TensorType(shape, "bool" if op in COMPARISONS else dtype)]
    return infer


def _where_infer(attrs, types: Sequence[TensorType]) -> list[TensorType]:
    cond, a, b = types
    require(cond.dtype == "bool", f"where: condition must be bool, got {cond}")
    dtype = same_dtype("where", [a, b])
    return [TensorType(broadcast_shapes("where", cond.shape, a.shape, b.shape), dtype)]


for _op, (_attrs_type, _fn) in UNARY.items():
    register(OpDef(_op, _attrs_type, (1, 1), _unary_infer(_op),
                   (lambda fn: lambda a, xs: [np.asarray(fn(a, xs[0]))])(_fn)))
for _op, _fn in BINARY.items():
    register(OpDef(_op, NoAttrs, (2, 2), _binary_infer(_op),
                   (lambda fn: lambda a, xs: [np.asarray(fn(xs[0], xs[1]))])(_fn)))
register(OpDef(Op.WHERE, NoAttrs, (3, 3), _where_infer,
               lambda a, xs: [np.where(xs[0], xs[1], xs[2])]))

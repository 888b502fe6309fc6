"""The operator set of the IR and the registry of per-op rules.

Each op is defined in exactly one place (a module under ``convc.ir.ops``) by an
``OpDef``: its attribute type, shape/dtype inference and NumPy reference
implementation. Everything else (verification, the interpreter, constant folding,
lowering) looks the op up here.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from convc.ir.types import TensorType


class Op(str, enum.Enum):
    """Every operator the IR knows. Values are the names printed in IR dumps."""

    # heavy
    CONV = "conv"
    CONV_TRANSPOSE = "conv_transpose"
    MATMUL = "matmul"
    # normalisation
    BATCH_NORM = "batch_norm"
    SOFTMAX = "softmax"
    # pooling and reductions
    MAX_POOL = "max_pool"
    AVG_POOL = "avg_pool"
    REDUCE_MEAN = "reduce_mean"
    REDUCE_MAX = "reduce_max"
    REDUCE_MIN = "reduce_min"
    REDUCE_SUM = "reduce_sum"
    REDUCE_PROD = "reduce_prod"
    # elementwise, unary
    RELU = "relu"
    LEAKY_RELU = "leaky_relu"
    ELU = "elu"
    SIGMOID = "sigmoid"
    TANH = "tanh"
    HARD_SIGMOID = "hard_sigmoid"
    HARD_SWISH = "hard_swish"
    CLIP = "clip"
    EXP = "exp"
    LOG = "log"
    SQRT = "sqrt"
    NEG = "neg"
    ABS = "abs"
    RECIPROCAL = "reciprocal"
    FLOOR = "floor"
    CEIL = "ceil"
    NOT = "not"
    CAST = "cast"
    # elementwise, binary / ternary (NumPy broadcasting)
    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    DIV = "div"
    POW = "pow"
    MAXIMUM = "maximum"
    MINIMUM = "minimum"
    PRELU = "prelu"
    EQUAL = "equal"
    LESS = "less"
    GREATER = "greater"
    AND = "and"
    OR = "or"
    WHERE = "where"
    # data movement
    RESHAPE = "reshape"
    TRANSPOSE = "transpose"
    BROADCAST_TO = "broadcast_to"
    CONCAT = "concat"
    SLICE = "slice"
    PAD = "pad"
    GATHER = "gather"
    RESIZE = "resize"
    INTERLEAVE = "interleave"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class NoAttrs:
    """Attributes of ops that take none."""


InferFn = Callable[[Any, Sequence[TensorType]], list[TensorType]]
ReferenceFn = Callable[[Any, Sequence[np.ndarray]], list[np.ndarray]]


@dataclass(frozen=True)
class OpDef:
    """The rules of one op.

    ``infer`` maps (attrs, input types) to output types and raises ``ShapeError`` on
    a mismatch; ``reference`` computes the outputs with NumPy. ``arity`` is the
    (min, max) number of inputs; ``heavy`` marks ops that carry most of the FLOPs.
    """

    op: Op
    attrs_type: type
    arity: tuple[int, int]
    infer: InferFn
    reference: ReferenceFn
    heavy: bool = False


_REGISTRY: dict[Op, OpDef] = {}


def register(opdef: OpDef) -> OpDef:
    if opdef.op in _REGISTRY:
        raise AssertionError(f"op {opdef.op} registered twice")
    _REGISTRY[opdef.op] = opdef
    return opdef


def opdef(op: Op) -> OpDef:
    """The rules of ``op``; every member of ``Op`` has one once ``convc.ir`` is imported."""
    return _REGISTRY[op]


def registered_ops() -> list[Op]:
    return list(_REGISTRY)

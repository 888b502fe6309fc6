"""Inference-time batch normalisation and softmax."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from convc.ir.op import Op, OpDef, register
from convc.ir.ops._util import require, same_dtype
from convc.ir.types import FLOAT_DTYPES, TensorType


@dataclass(frozen=True)
class BatchNormAttrs:
    """y = scale * (x - mean) / sqrt(var + epsilon) + bias, per channel (axis 1).

    Inputs: x, scale, bias, mean, var.
    """

    epsilon: float = 1e-5


def _infer_batch_norm(attrs, types: Sequence[TensorType]) -> list[TensorType]:
    x, *params = types
    same_dtype("batch_norm", types)
    require(x.rank >= 2, f"batch_norm: input {x} has no channel axis")
    for p in params:
        require(p.shape == (x.shape[1],), f"batch_norm: parameter {p} must have shape ({x.shape[1]},)")
    return [x]


def batch_norm_scale_shift(attrs: BatchNormAttrs, scale, bias, mean, var) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel (a, b) with batch_norm(x) = a * x + b."""
    a = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + attrs.epsilon)
    return a, bias.astype(np.float64) - a * mean.astype(np.float64)


def _batch_norm_reference(attrs, xs):
    x, *params = xs
    a, b = batch_norm_scale_shift(attrs, *params)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return [(x * a.reshape(shape) + b.reshape(shape)).astype(x.dtype)]


@dataclass(frozen=True)
class SoftmaxAttrs:
    """Softmax along one (non-negative) axis."""

    axis: int


def _infer_softmax(attrs: SoftmaxAttrs, types: Sequence[TensorType]) -> list[TensorType]:
    (x,) = types
    require(0 <= attrs.axis < x.rank, f"softmax: axis {attrs.axis} outside rank {x.rank}")
    require(x.dtype in FLOAT_DTYPES, f"softmax: needs a float input, got {x}")
    return [x]


def _softmax_reference(attrs, xs):
    (x,) = xs
    e = np.exp(x.astype(np.float64) - x.max(axis=attrs.axis, keepdims=True))
    return [(e / e.sum(axis=attrs.axis, keepdims=True)).astype(x.dtype)]


register(OpDef(Op.BATCH_NORM, BatchNormAttrs, (5, 5), _infer_batch_norm, _batch_norm_reference))
register(OpDef(Op.SOFTMAX, SoftmaxAttrs, (1, 1), _infer_softmax, _softmax_reference))

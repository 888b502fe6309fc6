"""BatchNormalization (inference form) and Softmax."""
from __future__ import annotations

import math

from convc.frontends.onnx.context import Context
from convc.frontends.onnx.registry import converter
from convc.ir import Op
from convc.ir.ops.movement import ReshapeAttrs
from convc.ir.ops.normalization import BatchNormAttrs, SoftmaxAttrs


@converter("BatchNormalization")
def batch_norm(ctx: Context):
    training = ctx.attrs.int("training_mode", 0)
    if training:
        raise ctx.unsupported("training_mode", training, "convc compiles inference graphs")
    ctx.reject_extra_outputs(1, "running_mean/running_var (training only)")
    ctx.attrs.float("momentum")  # only updates the running statistics in training
    inputs = [ctx.input(i) for i in range(5)]
    return ctx.emit(Op.BATCH_NORM, inputs, BatchNormAttrs(ctx.attrs.float("epsilon", 1e-5)))


@converter("Softmax", since=13)
def softmax(ctx: Context):
    x = ctx.input(0)
    return ctx.emit(Op.SOFTMAX, [x], SoftmaxAttrs(ctx.axis(ctx.attrs.int("axis", -1), x.type.rank)))


@converter("Softmax", until=12)
def softmax_2d(ctx: Context):
    """Before opset 13 Softmax coerces its input to 2-D at ``axis`` (default 1)."""
    x = ctx.input(0)
    axis = ctx.axis(ctx.attrs.int("axis", 1), x.type.rank)
    rows = math.prod(x.shape[:axis])
    flat = ctx.emit(Op.RESHAPE, [x], ReshapeAttrs((rows, math.prod(x.shape[axis:]))), name=f"{x.name}_2d")
    y = ctx.emit(Op.SOFTMAX, [flat], SoftmaxAttrs(1))
    return ctx.emit(Op.RESHAPE, [y], ReshapeAttrs(x.shape))

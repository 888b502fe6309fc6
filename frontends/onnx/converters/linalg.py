"""MatMul and Gemm."""
from __future__ import annotations

from convc.frontends.onnx.context import Context
from convc.frontends.onnx.registry import converter
from convc.ir import Op
from convc.ir.ops.movement import TransposeAttrs


@converter("MatMul")
def matmul(ctx: Context):
    return ctx.emit(Op.MATMUL, [ctx.input(0), ctx.input(1)])


@converter("Gemm")
def gemm(ctx: Context):
    """Y = alpha * A' @ B' + beta * C: transposes, then alpha folded into B (a constant
    when B is a weight), then the broadcast bias."""
    a, b, c = ctx.input(0), ctx.input(1), ctx.optional_input(2)
    alpha, beta = ctx.attrs.float("alpha", 1.0), ctx.attrs.float("beta", 1.0)
    for value in (a, b):
        if value.type.rank != 2:
            raise ctx.malformed(f"operand {value.name!r} has shape {list(value.shape)}; Gemm needs matrices")
    if ctx.attrs.int("transA", 0):
        a = ctx.emit(Op.TRANSPOSE, [a], TransposeAttrs((1, 0)), name=f"{a.name}_t")
    if ctx.attrs.int("transB", 0):
        b = ctx.emit(Op.TRANSPOSE, [b], TransposeAttrs((1, 0)), name=f"{b.name}_t")
    if alpha != 1.0:
        b = ctx.emit(Op.MUL, [b, ctx.scalar(alpha, b)], name=f"{b.name}_alpha")
    y = ctx.emit(Op.MATMUL, [a, b])
    if c is None:
        return y
    if beta != 1.0:
        c = ctx.emit(Op.MUL, [c, ctx.scalar(beta, c)], name=f"{c.name}_beta")
    return ctx.emit(Op.ADD, [y, c])

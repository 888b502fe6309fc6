"""Ops that produce constants at import: Constant, Shape, ConstantOfShape, Range; and Cast."""
from __future__ import annotations

import numpy as np

from convc.frontends.onnx.context import Context
from convc.frontends.onnx.dtypes import ir_dtype, onnx_type_name
from convc.frontends.onnx.registry import converter
from convc.errors import ShapeError
from convc.ir import Op
from convc.ir.ops.elementwise import CastAttrs


@converter("Constant")
def constant(ctx: Context):
    for unsupported in ("sparse_value", "value_string", "value_strings"):
        if ctx.attrs.has(unsupported):
            raise ctx.unsupported(unsupported, "...", "convc has no sparse or string tensors")
    readers = {
        "value": lambda: ctx.attrs.tensor("value"),
        "value_float": lambda: np.array(ctx.attrs.float("value_float"), np.float32),
        "value_floats": lambda: np.array(ctx.attrs.floats("value_floats"), np.float32),
        "value_int": lambda: np.array(ctx.attrs.int("value_int"), np.int64),
        "value_ints": lambda: np.array(ctx.attrs.ints("value_ints"), np.int64),
    }
    given = [name for name in readers if ctx.attrs.has(name)]
    if len(given) != 1:
        raise ctx.malformed(f"needs exactly one value attribute, has {given}")
    return ctx.constant(readers[given[0]](), name=ctx.node.output[0])


@converter("Shape")
def shape(ctx: Context):
    """The input's static shape, sliced by start/end (opset 15; clamped like Python slices)."""
    dims = ctx.input(0).shape
    start, end = ctx.attrs.int("start", 0), ctx.attrs.int("end", len(dims))
    return ctx.constant(np.array(dims[start:end], dtype=np.int64), name=ctx.node.output[0])


@converter("ConstantOfShape")
def constant_of_shape(ctx: Context):
    dims = ctx.const_input(0, "input")
    value = ctx.attrs.tensor("value")
    value = np.zeros(1, np.float32) if value is None else value
    if value.size != 1:
        raise ctx.malformed(f"value must hold one element, has shape {list(value.shape)}")
    return ctx.constant(np.full(tuple(int(d) for d in dims), value.reshape(()), dtype=value.dtype),
                        name=ctx.node.output[0])


@converter("Range")
def range_(ctx: Context):
    """count = max(ceil((limit - start) / delta), 0); element i = start + i * delta."""
    start, limit, delta = (ctx.const_input(i, what) for i, what in enumerate(("start", "limit", "delta")))
    if float(delta) == 0:
        raise ctx.malformed("delta is 0")
    count = max(int(np.ceil((float(limit) - float(start)) / float(delta))), 0)
    # stash_type (opset 27) picks float32 arithmetic for float16 ranges (the default), else native
    native = start.dtype == np.float16 and ctx.attrs.int("stash_type", 1) == 0
    work = start.dtype if native or not np.issubdtype(start.dtype, np.floating) else np.float64
    values = start.astype(work).reshape(()) + np.arange(count).astype(work) * delta.astype(work).reshape(())
    return ctx.constant(values.astype(start.dtype), name=ctx.node.output[0])


@converter("Cast")
def cast(ctx: Context):
    to = ctx.attrs.int("to")
    # saturate and round_mode only change conversions to 8-bit floats, which are rejected here
    ctx.attrs.int("saturate")
    ctx.attrs.string("round_mode")
    if to is None:
        raise ctx.malformed("attribute 'to' is missing")
    try:
        dtype = ir_dtype(to, "the cast result")
    except ShapeError:
        raise ctx.unsupported("to", onnx_type_name(to), "the IR has no such dtype") from None
    return ctx.emit(Op.CAST, [ctx.input(0)], CastAttrs(dtype))



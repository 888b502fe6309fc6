"""MaxPool, AveragePool and the global pools."""
from __future__ import annotations

from convc.frontends.onnx.context import Context
from convc.frontends.onnx.converters._window import read_window
from convc.frontends.onnx.registry import converter
from convc.ir import Op
from convc.ir.ops.pool import PoolAttrs, ReduceAttrs


def _pool_attrs(ctx: Context, *, dilations: bool, count_include_pad: bool = False) -> PoolAttrs:
    x = ctx.input(0)
    kernel = ctx.attrs.ints("kernel_shape")
    if kernel is None or len(kernel) != x.type.rank - 2:
        raise ctx.malformed(f"kernel_shape={kernel} must give one size per spatial axis of {x.type}")
    window = read_window(ctx, x.shape[2:], kernel, dilations=dilations)
    return PoolAttrs(tuple(kernel), window.strides, window.pads_begin, window.pads_end, window.dilations,
                     ceil_mode=bool(ctx.attrs.int("ceil_mode", 0)), count_include_pad=count_include_pad)


@converter("MaxPool")
def max_pool(ctx: Context):
    ctx.reject_extra_outputs(1, "'Indices'")
    storage_order = ctx.attrs.int("storage_order", 0)
    if storage_order != 0:
        raise ctx.unsupported("storage_order", storage_order, "only row-major (0) is supported")
    return ctx.emit(Op.MAX_POOL, [ctx.input(0)], _pool_attrs(ctx, dilations=True))


@converter("AveragePool")
def average_pool(ctx: Context):
    include = bool(ctx.attrs.int("count_include_pad", 0))
    attrs = _pool_attrs(ctx, dilations=ctx.opset >= 19, count_include_pad=include)
    return ctx.emit(Op.AVG_POOL, [ctx.input(0)], attrs)


def _global(op: Op):
    def convert(ctx: Context):
        x = ctx.input(0)
        return ctx.emit(op, [x], ReduceAttrs(tuple(range(2, x.type.rank)), keepdims=True))
    return convert


converter("GlobalAveragePool")(_global(Op.REDUCE_MEAN))
converter("GlobalMaxPool")(_global(Op.REDUCE_MAX))

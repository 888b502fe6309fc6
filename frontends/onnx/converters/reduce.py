"""ReduceMean/Max/Min/Sum/Prod; axes move from an attribute to an input (Sum at 13, others at 18)."""
from __future__ import annotations

from convc.frontends.onnx.context import Context
from convc.frontends.onnx.registry import converter
from convc.ir import Op
from convc.ir.ops.pool import ReduceAttrs

REDUCTIONS = {"ReduceMean": (Op.REDUCE_MEAN, 18), "ReduceMax": (Op.REDUCE_MAX, 18),
              "ReduceMin": (Op.REDUCE_MIN, 18), "ReduceSum": (Op.REDUCE_SUM, 13),
              "ReduceProd": (Op.REDUCE_PROD, 18)}


def _reduce(op: Op, axes_input_since: int):
    def convert(ctx: Context):
        x = ctx.input(0)
        keepdims = bool(ctx.attrs.int("keepdims", 1))
        if ctx.opset >= axes_input_since:
            given = ctx.optional_const(1, "axes")
            axes = None if given is None else tuple(int(a) for a in given.reshape(-1))
            noop = bool(ctx.attrs.int("noop_with_empty_axes", 0))
        else:
            axes = ctx.attrs.ints("axes")
            noop = False
        if not axes:
            if noop:
                return x
            axes = tuple(range(x.type.rank))
        axes = tuple(sorted(ctx.axes(axes, x.type.rank)))
        return ctx.emit(op, [x], ReduceAttrs(axes, keepdims))
    return convert


for _name, (_op, _since) in REDUCTIONS.items():
    converter(_name)(_reduce(_op, _since))

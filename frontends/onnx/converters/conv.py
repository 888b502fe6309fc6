"""Conv and ConvTranspose (1-D, 2-D, 3-D), with every auto_pad mode resolved to explicit pads."""
from __future__ import annotations

from convc.frontends.onnx.context import Context
from convc.frontends.onnx.converters._window import (read_auto_pad, read_ints, read_pads, read_window,
                                                     split_same_pad)
from convc.frontends.onnx.registry import converter
from convc.ir import ConvAttrs, ConvTransposeAttrs, Op


def _kernel(ctx: Context) -> tuple[int, ...]:
    """The kernel size from the weight, checked against the optional kernel_shape attribute."""
    w = ctx.input(1)
    kernel = w.shape[2:]
    declared = ctx.attrs.ints("kernel_shape", kernel)
    if tuple(declared) != kernel:
        raise ctx.malformed(f"kernel_shape={list(declared)} does not match the weight shape {list(w.shape)}")
    return kernel


def _inputs(ctx: Context):
    return [v for v in (ctx.input(0), ctx.input(1), ctx.optional_input(2)) if v is not None]


@converter("Conv")
def conv(ctx: Context):
    x = ctx.input(0)
    kernel = _kernel(ctx)
    window = read_window(ctx, x.shape[2:], kernel)
    attrs = ConvAttrs(window.strides, window.pads_begin, window.pads_end, window.dilations,
                      ctx.attrs.int("group", 1))
    return ctx.emit(Op.CONV, _inputs(ctx), attrs)


@converter("ConvTranspose")
def conv_transpose(ctx: Context):
    """Pads per the ONNX spec: with output_shape (or SAME_* auto_pad, whose output is i * s) the
    total pad is s*(i-1) + output_padding + d*(k-1) + 1 - output; SAME_UPPER puts its odd unit at
    the end, every other mode at the start."""
    x = ctx.input(0)
    kernel = _kernel(ctx)
    n = len(kernel)
    strides = read_ints(ctx, "strides", n, 1)
    dilations = read_ints(ctx, "dilations", n, 1)
    output_padding = read_ints(ctx, "output_padding", n, 0)
    auto_pad = read_auto_pad(ctx)
    output_shape = ctx.attrs.ints("output_shape")
    begin, end = read_pads(ctx, n)
    if output_shape is not None and len(output_shape) == n + 2:
        output_shape = output_shape[2:]
    if output_shape is not None and len(output_shape) != n:
        raise ctx.malformed(f"output_shape={list(output_shape)} must have {n} spatial entries")
    if output_shape is None and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        output_shape = tuple(i * s for i, s in zip(x.shape[2:], strides))
    if output_shape is not None:
        totals = [s * (i - 1) + op + d * (k - 1) + 1 - o for i, k, s, d, op, o in zip(
            x.shape[2:], kernel, strides, dilations, output_padding, output_shape)]
        sides = [split_same_pad(t, "SAME_UPPER" if auto_pad == "SAME_UPPER" else "SAME_LOWER") for t in totals]
        begin, end = tuple(b for b, _ in sides), tuple(e for _, e in sides)
    elif auto_pad == "VALID":
        begin = end = (0,) * n
    attrs = ConvTransposeAttrs(strides, begin, end, output_padding, dilations, ctx.attrs.int("group", 1))
    return ctx.emit(Op.CONV_TRANSPOSE, _inputs(ctx), attrs)

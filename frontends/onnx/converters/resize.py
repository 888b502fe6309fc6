"""Resize (opsets 11, 13, 18, 19) and the deprecated Upsample, as one IR ``resize``.

The output shape and per-axis scales are resolved here: from ``scales`` the output is
floor(in * scale); from ``sizes`` the scale is out / in, or with keep_aspect_ratio_policy
not_larger / not_smaller one common scale (the min / max over ``axes``) and an output of
round_half_up(scale * in).
"""
from __future__ import annotations

import math

import numpy as np

from convc.frontends.onnx.context import Context
from convc.frontends.onnx.registry import converter
from convc.ir import Op, Value
from convc.ir.ops.resize import CoordinateMode, NearestMode, ResizeAttrs, ResizeMode

POLICIES = ("stretch", "not_larger", "not_smaller")


def _enum(ctx: Context, enum_type, attr: str, default: str):
    value = ctx.attrs.string(attr, default)
    try:
        return enum_type(value)
    except ValueError:
        raise ctx.unsupported(attr, value, f"supported: {[m.value for m in enum_type]}") from None


def _shape_and_scales(ctx: Context, x: Value, axes: tuple[int, ...], scales, sizes, policy: str):
    rank = x.type.rank
    out, factors = list(x.shape), [1.0] * rank
    if sizes is not None and sizes.size:
        if sizes.size != len(axes):
            raise ctx.malformed(f"sizes {sizes.tolist()} must have one entry per axis {list(axes)}")
        if policy == "stretch":
            for axis, size in zip(axes, sizes):
                out[axis], factors[axis] = int(size), int(size) / x.shape[axis]
        else:
            pick = min if policy == "not_larger" else max
            scale = pick(int(s) / x.shape[a] for a, s in zip(axes, sizes))
            for axis in axes:
                out[axis], factors[axis] = int(scale * x.shape[axis] + 0.5), scale
    elif scales is not None and scales.size:
        if scales.size != len(axes):
            raise ctx.malformed(f"scales {scales.tolist()} must have one entry per axis {list(axes)}")
        for axis, scale in zip(axes, scales):
            if scale <= 0:
                raise ctx.malformed(f"scale {float(scale)} must be positive")
            out[axis], factors[axis] = math.floor(x.shape[axis] * float(scale)), float(scale)
    else:
        raise ctx.malformed("needs one of the inputs 'scales' or 'sizes'")
    return tuple(out), tuple(factors)


def _roi(ctx: Context, x: Value, axes: tuple[int, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    roi = ctx.optional_const(1, "roi")
    start, end = [0.0] * x.type.rank, [1.0] * x.type.rank
    if roi is None or roi.size == 0:
        raise ctx.malformed("tf_crop_and_resize needs the 'roi' input")
    if roi.size != 2 * len(axes):
        raise ctx.malformed(f"roi {roi.tolist()} must have 2 entries per axis {list(axes)}")
    for i, axis in enumerate(axes):
        start[axis], end[axis] = float(roi[i]), float(roi[len(axes) + i])
    return tuple(start), tuple(end)


@converter("Resize")
def resize(ctx: Context):
    x = ctx.input(0)
    if ctx.opset >= 18:
        antialias = ctx.attrs.int("antialias", 0)
        if antialias:
            raise ctx.unsupported("antialias", antialias, "only antialias=0 is implemented")
        axes = ctx.axes(ctx.attrs.ints("axes", tuple(range(x.type.rank))), x.type.rank)
        policy = ctx.attrs.string("keep_aspect_ratio_policy", "stretch")
        if policy not in POLICIES:
            raise ctx.malformed(f"keep_aspect_ratio_policy={policy!r} is not one of {POLICIES}")
    else:
        axes, policy = tuple(range(x.type.rank)), "stretch"
    coordinate_mode = _enum(ctx, CoordinateMode, "coordinate_transformation_mode", "half_pixel")
    scales = ctx.optional_const(2, "scales")
    sizes = ctx.optional_const(3, "sizes")
    if scales is not None and sizes is not None and scales.size and sizes.size:
        raise ctx.malformed("only one of 'scales' and 'sizes' may be given")
    shape, factors = _shape_and_scales(ctx, x, axes, scales, sizes, policy)
    roi_start, roi_end = (_roi(ctx, x, axes) if coordinate_mode is CoordinateMode.TF_CROP_AND_RESIZE
                          else ((), ()))  # roi only acts in tf_crop_and_resize
    attrs = ResizeAttrs(
        shape, factors, mode=_enum(ctx, ResizeMode, "mode", "nearest"), coordinate_mode=coordinate_mode,
        nearest_mode=_enum(ctx, NearestMode, "nearest_mode", "round_prefer_floor"),
        cubic_coeff_a=ctx.attrs.float("cubic_coeff_a", -0.75),
        exclude_outside=bool(ctx.attrs.int("exclude_outside", 0)),
        extrapolation_value=ctx.attrs.float("extrapolation_value", 0.0),
        roi_start=roi_start, roi_end=roi_end)
    return ctx.emit(Op.RESIZE, [x], attrs)


@converter("Upsample")
def upsample(ctx: Context):
    """Upsample-9/10: output floor(in * scale); nearest picks floor(j / scale) (asymmetric)."""
    x = ctx.input(0)
    mode = _enum(ctx, ResizeMode, "mode", "nearest")
    if mode is ResizeMode.CUBIC:
        raise ctx.unsupported("mode", mode.value, "Upsample supports nearest and linear")
    scales = ctx.const_input(1, "scales").astype(np.float64)
    shape, factors = _shape_and_scales(ctx, x, tuple(range(x.type.rank)), scales, None, "stretch")
    attrs = ResizeAttrs(shape, factors, mode=mode, coordinate_mode=CoordinateMode.ASYMMETRIC,
                        nearest_mode=NearestMode.FLOOR)
    return ctx.emit(Op.RESIZE, [x], attrs)

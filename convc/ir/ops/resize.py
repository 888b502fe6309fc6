"""Resize (nearest, linear, cubic) as separable per-axis interpolation.

Each resized axis is an interpolation table: output index j reads input indices
``index[j, t]`` with weights ``weight[j, t]`` (t < taps: 2 for nearest/linear, 4 for
cubic), or the extrapolation value where ``valid[j]`` is false (tf_crop_and_resize).
Applying the tables axis after axis equals ONNX's N-d interpolation, because every
mode is a tensor product of 1-D kernels. The reference interpreter and the lowering
both read these tables.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from convc.ir.op import Op, OpDef, register
from convc.ir.ops._util import require
from convc.ir.types import FLOAT_DTYPES, TensorType


class ResizeMode(str, enum.Enum):
    NEAREST = "nearest"
    LINEAR = "linear"
    CUBIC = "cubic"


class CoordinateMode(str, enum.Enum):
    HALF_PIXEL = "half_pixel"
    HALF_PIXEL_SYMMETRIC = "half_pixel_symmetric"
    PYTORCH_HALF_PIXEL = "pytorch_half_pixel"
    ALIGN_CORNERS = "align_corners"
    ASYMMETRIC = "asymmetric"
    TF_CROP_AND_RESIZE = "tf_crop_and_resize"


class NearestMode(str, enum.Enum):
    ROUND_PREFER_FLOOR = "round_prefer_floor"
    ROUND_PREFER_CEIL = "round_prefer_ceil"
    FLOOR = "floor"
    CEIL = "ceil"


@dataclass(frozen=True)
class ResizeAttrs:
    """Resize to ``shape``; ``scales`` are the per-axis factors used to map coordinates."""

    shape: tuple[int, ...]
    scales: tuple[float, ...]
    mode: ResizeMode = ResizeMode.NEAREST
    coordinate_mode: CoordinateMode = CoordinateMode.HALF_PIXEL
    nearest_mode: NearestMode = NearestMode.ROUND_PREFER_FLOOR
    cubic_coeff_a: float = -0.75
    exclude_outside: bool = False
    extrapolation_value: float = 0.0
    roi_start: tuple[float, ...] = ()
    roi_end: tuple[float, ...] = ()


@dataclass(frozen=True)
class AxisTable:
    index: np.ndarray   # (out, taps) int64, within [0, in)
    weight: np.ndarray  # (out, taps) float64
    valid: np.ndarray   # (out,) bool

    def is_identity(self, size_in: int) -> bool:
        """Whether the table maps an axis of length ``size_in`` onto itself, sample for sample."""
        n = self.index.shape[0]
        if n != size_in:  # a 2 -> 1 downsample picking sample 0 looks like identity otherwise
            return False
        picked = self.weight.argmax(axis=1)
        return (bool(self.valid.all()) and np.array_equal(self.index[np.arange(n), picked], np.arange(n))
                and np.allclose(self.weight[np.arange(n), picked], 1.0)
                and np.allclose(np.abs(self.weight).sum(axis=1), 1.0))


def _source_coordinate(attrs: ResizeAttrs, axis: int, j: int, size_in: int, size_out: int) -> float:
    scale = attrs.scales[axis]
    mode = attrs.coordinate_mode
    length = scale * size_in  # ONNX's "length_resized": unrounded when the scales were given
    if mode is CoordinateMode.ALIGN_CORNERS:
        return 0.0 if length == 1 else j * (size_in - 1) / (length - 1)
    if mode is CoordinateMode.ASYMMETRIC:
        return j / scale
    if mode is CoordinateMode.TF_CROP_AND_RESIZE:
        lo, hi = attrs.roi_start[axis], attrs.roi_end[axis]
        if length == 1:
            return (hi - lo) * (size_in - 1) / 2 + lo * (size_in - 1)
        return j * (hi - lo) * (size_in - 1) / (length - 1) + lo * (size_in - 1)
    if mode is CoordinateMode.PYTORCH_HALF_PIXEL:
        return -0.5 if length == 1 else (j + 0.5) / scale - 0.5
    if mode is CoordinateMode.HALF_PIXEL_SYMMETRIC:
        adjustment = size_out / (scale * size_in)
        offset = size_in / 2 * (1 - adjustment)
        return offset + (j + 0.5) / scale - 0.5
    return (j + 0.5) / scale - 0.5


def _coefficients(attrs: ResizeAttrs, ratio: float) -> list[float]:
    """Weights of the taps around a source coordinate; ratio is in (0, 1]."""
    if attrs.mode is ResizeMode.LINEAR:
        return [1 - ratio, ratio]
    if attrs.mode is ResizeMode.NEAREST:
        if ratio == 1:
            return [0.0, 1.0]
        up = {NearestMode.ROUND_PREFER_FLOOR: ratio > 0.5, NearestMode.ROUND_PREFER_CEIL: ratio >= 0.5,
              NearestMode.FLOOR: False, NearestMode.CEIL: True}[attrs.nearest_mode]
        return [0.0, 1.0] if up else [1.0, 0.0]
    a = attrs.cubic_coeff_a

    def kernel(t: float) -> float:  # Keys' cubic convolution kernel, |t| <= 2
        t = abs(t)
        if t <= 1:
            return ((a + 2) * t - (a + 3)) * t * t + 1
        return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return [kernel(ratio + 1), kernel(ratio), kernel(1 - ratio), kernel(2 - ratio)]


def axis_table(attrs: ResizeAttrs, axis: int, size_in: int) -> AxisTable:
    """The interpolation table of one axis."""
    size_out = attrs.shape[axis]
    taps = 4 if attrs.mode is ResizeMode.CUBIC else 2
    index = np.zeros((size_out, taps), dtype=np.int64)
    weight = np.zeros((size_out, taps), dtype=np.float64)
    valid = np.ones(size_out, dtype=bool)
    for j in range(size_out):
        x = _source_coordinate(attrs, axis, j, size_in, size_out)
        if attrs.coordinate_mode is CoordinateMode.TF_CROP_AND_RESIZE and not 0 <= x <= size_in - 1:
            valid[j] = False
            continue
        base = math.floor(x)
        ratio = x - base
        if ratio == 0:  # on a sample: take it as the right-hand tap
            base, ratio = base - 1, 1.0
        first = base - (taps // 2 - 1)
        raw = np.arange(first, first + taps)
        coeff = np.array(_coefficients(attrs, ratio), dtype=np.float64)
        if attrs.exclude_outside:
            coeff = np.where((raw >= 0) & (raw < size_in), coeff, 0.0)
            coeff = coeff / coeff.sum()
        index[j] = np.clip(raw, 0, size_in - 1)
        weight[j] = coeff
    return AxisTable(index, weight, valid)


def _infer_resize(attrs: ResizeAttrs, types: Sequence[TensorType]):
    (x,) = types
    require(x.dtype in FLOAT_DTYPES, f"resize: needs a float input, got {x}")
    require(len(attrs.shape) == len(attrs.scales) == x.rank, f"resize: shape/scales do not cover {x}")
    require(all(d >= 1 for d in attrs.shape) or x.size == 0, f"resize: output shape {attrs.shape} is empty")
    if attrs.coordinate_mode is CoordinateMode.TF_CROP_AND_RESIZE:
        require(len(attrs.roi_start) == len(attrs.roi_end) == x.rank, "resize: tf_crop_and_resize needs a roi")
    return [TensorType(attrs.shape, x.dtype)]


def resize_reference(attrs: ResizeAttrs, x: np.ndarray) -> np.ndarray:
    y = x.astype(np.float64)
    for axis, size_in in enumerate(x.shape):
        table = axis_table(attrs, axis, size_in)
        if table.is_identity(size_in):
            continue
        shape = [1] * y.ndim
        shape[axis] = -1
        out = sum(np.take(y, table.index[:, t], axis=axis) * table.weight[:, t].reshape(shape)
                  for t in range(table.index.shape[1]))
        y = np.where(table.valid.reshape(shape), out, attrs.extrapolation_value)
    return y.astype(x.dtype)


register(OpDef(Op.RESIZE, ResizeAttrs, (1, 1), _infer_resize, lambda a, xs: [resize_reference(a, xs[0])]))

"""Data movement: Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat, Split, Slice, Gather,
Pad, Expand, Identity, Dropout, DepthToSpace, SpaceToDepth."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from convc.errors import ShapeError
from convc.frontends.onnx.context import Context
from convc.frontends.onnx.registry import converter
from convc.ir import Op, Value
from convc.ir.ops.movement import (BroadcastToAttrs, ConcatAttrs, GatherAttrs, PadAttrs, PadMode,
                                   ReshapeAttrs, SliceAttrs, TransposeAttrs)


def reshape(ctx: Context, x: Value, shape: Sequence[int], name: str = "") -> Value:
    shape = tuple(int(d) for d in shape)
    if math.prod(shape) != x.type.size:
        raise ShapeError(f"cannot reshape {x.type} to {list(shape)}")
    return x if x.shape == shape else ctx.emit(Op.RESHAPE, [x], ReshapeAttrs(shape), name=name)


def transpose(ctx: Context, x: Value, perm: Sequence[int], name: str = "") -> Value:
    return ctx.emit(Op.TRANSPOSE, [x], TransposeAttrs(tuple(perm)), name=name)


def slice_axes(ctx: Context, x: Value, ranges: Mapping[int, tuple[int, int, int]], name: str = "") -> Value:
    """Slice ``x`` with resolved (start, end, step) per axis; other axes are kept whole."""
    full = [ranges.get(axis, (0, d, 1)) for axis, d in enumerate(x.shape)]
    attrs = SliceAttrs(*(tuple(int(r[i]) for r in full) for i in range(3)))
    return ctx.emit(Op.SLICE, [x], attrs, name=name)


def resolve_slice(start: int, end: int, step: int, dim: int) -> tuple[int, int, int]:
    """ONNX Slice bounds -> Python ``range`` arguments: negatives count from the end, then
    clamp to [0, dim] (step > 0) or [0, dim - 1] / [-1, dim - 1] (step < 0)."""
    start, end = start + dim if start < 0 else start, end + dim if end < 0 else end
    if step > 0:
        return min(max(start, 0), dim), min(max(end, 0), dim), step
    return min(max(start, 0), dim - 1), min(max(end, -1), dim - 1), step


def _moved_axes(ctx: Context, attr_until: int) -> np.ndarray | None:
    """``axes`` as an attribute before ``attr_until + 1``, as optional input 1 after."""
    if ctx.opset <= attr_until:
        axes = ctx.attrs.ints("axes")
        return None if axes is None else np.array(axes, dtype=np.int64)
    return ctx.optional_const(1, "axes")


@converter("Reshape")
def reshape_(ctx: Context):
    """0 copies the input dim (unless allowzero=1, opset 14), -1 takes what is left."""
    x = ctx.input(0)
    spec = [int(d) for d in ctx.const_input(1, "shape").reshape(-1)]
    allowzero = bool(ctx.attrs.int("allowzero", 0))
    shape = [x.shape[i] if d == 0 and not allowzero and i < x.type.rank else d for i, d in enumerate(spec)]
    if shape.count(-1) > 1 or any(d < -1 for d in shape):
        raise ctx.malformed(f"shape {spec} has more than one -1 or a negative size")
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        if known == 0 or x.type.size % known:
            raise ShapeError(f"cannot reshape {x.type} to {spec}")
        shape[shape.index(-1)] = x.type.size // known
    return reshape(ctx, x, shape)


@converter("Flatten")
def flatten(ctx: Context):
    x = ctx.input(0)
    axis = ctx.attrs.int("axis", 1)
    if not -x.type.rank <= axis <= x.type.rank:
        raise ctx.malformed(f"axis {axis} is outside [-{x.type.rank}, {x.type.rank}]")
    axis = axis + x.type.rank if axis < 0 else axis
    return reshape(ctx, x, (math.prod(x.shape[:axis]), math.prod(x.shape[axis:])))


@converter("Squeeze")
def squeeze(ctx: Context):
    x = ctx.input(0)
    given = _moved_axes(ctx, 12)
    if given is None:
        axes = {i for i, d in enumerate(x.shape) if d == 1}
    else:
        axes = set(ctx.axes(given.reshape(-1), x.type.rank))
    wrong = [a for a in axes if x.shape[a] != 1]
    if wrong:
        raise ShapeError(f"cannot squeeze axes {sorted(wrong)} of {x.type}: their size is not 1")
    return reshape(ctx, x, [d for i, d in enumerate(x.shape) if i not in axes])


@converter("Unsqueeze")
def unsqueeze(ctx: Context):
    x = ctx.input(0)
    given = _moved_axes(ctx, 12)
    if given is None:
        raise ctx.malformed("axes are required")
    rank = x.type.rank + given.size
    axes = set(ctx.axes(given.reshape(-1), rank))
    dims = iter(x.shape)
    return reshape(ctx, x, [1 if i in axes else next(dims) for i in range(rank)])


@converter("Transpose")
def transpose_(ctx: Context):
    x = ctx.input(0)
    perm = ctx.attrs.ints("perm", tuple(reversed(range(x.type.rank))))
    if sorted(perm) != list(range(x.type.rank)):
        raise ctx.malformed(f"perm {list(perm)} is not a permutation of the {x.type.rank} axes")
    return transpose(ctx, x, perm)


@converter("Concat")
def concat(ctx: Context):
    values = [v for v in ctx.inputs if v is not None]
    axis = ctx.attrs.int("axis")
    if axis is None:
        raise ctx.malformed("attribute 'axis' is missing")
    return ctx.emit(Op.CONCAT, values, ConcatAttrs(ctx.axis(axis, values[0].type.rank)))


@converter("Split")
def split(ctx: Context):
    """Sizes from the split attribute (< 13) or input (>= 13), else equal parts of
    ceil(dim / outputs), the last one smaller (opset 18's num_outputs)."""
    x = ctx.input(0)
    axis = ctx.axis(ctx.attrs.int("axis", 0), x.type.rank)
    dim = x.shape[axis]
    if ctx.opset < 13:
        sizes = ctx.attrs.ints("split")
    else:
        given = ctx.optional_const(1, "split")
        sizes = None if given is None else tuple(int(s) for s in given.reshape(-1))
    parts = ctx.attrs.int("num_outputs", len(ctx.node.output)) if ctx.opset >= 18 else len(ctx.node.output)
    if parts != len(ctx.node.output):
        raise ctx.malformed(f"num_outputs={parts} but the node has {len(ctx.node.output)} outputs")
    if sizes is None:
        chunk = -(-dim // parts)
        sizes = tuple(max(min(chunk, dim - i * chunk), 0) for i in range(parts))
    if len(sizes) != parts or sum(sizes) != dim or min(sizes) < 0:
        raise ctx.malformed(f"split sizes {list(sizes)} do not cut axis {axis} of {x.type} "
                            f"into {parts} outputs")
    offsets = np.cumsum((0,) + tuple(sizes))
    return [slice_axes(ctx, x, {axis: (int(b), int(e), 1)}, name=name)
            for b, e, name in zip(offsets[:-1], offsets[1:], ctx.node.output)]


@converter("Slice")
def slice_(ctx: Context):
    x = ctx.input(0)
    starts = ctx.const_input(1, "starts").reshape(-1)
    ends = ctx.const_input(2, "ends").reshape(-1)
    axes = ctx.optional_const(3, "axes")
    steps = ctx.optional_const(4, "steps")
    axes = ctx.axes(np.arange(starts.size) if axes is None else axes.reshape(-1), x.type.rank)
    steps = np.ones(starts.size, np.int64) if steps is None else steps.reshape(-1)
    if not starts.size == ends.size == len(axes) == steps.size:
        raise ctx.malformed("starts, ends, axes and steps must have the same length")
    if (steps == 0).any():
        raise ctx.malformed("a step is 0")
    ranges = {a: resolve_slice(int(b), int(e), int(s), x.shape[a])
              for a, b, e, s in zip(axes, starts, ends, steps)}
    return slice_axes(ctx, x, ranges)


@converter("Gather")
def gather(ctx: Context):
    data = ctx.input(0)
    axis = ctx.axis(ctx.attrs.int("axis", 0), data.type.rank)
    indices = ctx.const_input(1, "indices").astype(np.int64)
    dim = data.shape[axis]
    if ((indices < -dim) | (indices >= dim)).any():
        raise ShapeError(f"indices {indices.reshape(-1).tolist()} are out of bounds for axis {axis} of "
                         f"{data.type}")
    return ctx.emit(Op.GATHER, [data, ctx.constant(np.where(indices < 0, indices + dim, indices))],
                    GatherAttrs(axis))


@converter("Pad")
def pad(ctx: Context):
    """Negative pads crop: pad by the positive parts, then slice away the negative ones."""
    x = ctx.input(0)
    mode = ctx.attrs.string("mode", "constant")
    if mode not in {m.value for m in PadMode}:
        raise ctx.unsupported("mode", mode, f"supported: {[m.value for m in PadMode]}")
    pads = ctx.const_input(1, "pads").reshape(-1).astype(np.int64)
    value = ctx.optional_const(2, "constant_value")
    axes = ctx.optional_const(3, "axes")
    axes = ctx.axes(range(x.type.rank) if axes is None else axes.reshape(-1), x.type.rank)
    if pads.size != 2 * len(axes):
        raise ctx.malformed(f"pads {pads.tolist()} must have 2 entries per padded axis ({len(axes)} axes)")
    begin, end = [0] * x.type.rank, [0] * x.type.rank
    for i, axis in enumerate(axes):
        begin[axis], end[axis] = int(pads[i]), int(pads[len(axes) + i])
    fill = 0.0 if value is None or value.size == 0 else value.reshape(-1)[0].item()
    attrs = PadAttrs(PadMode(mode), tuple(max(p, 0) for p in begin), tuple(max(p, 0) for p in end), fill)
    y = x if not any(attrs.pads_begin + attrs.pads_end) else ctx.emit(Op.PAD, [x], attrs)
    crops = {a: (max(-b, 0), y.shape[a] + min(e, 0), 1)
             for a, (b, e) in enumerate(zip(begin, end)) if b < 0 or e < 0}
    return slice_axes(ctx, y, crops) if crops else y


@converter("Expand")
def expand(ctx: Context):
    x = ctx.input(0)
    target = tuple(int(d) for d in ctx.const_input(1, "shape").reshape(-1))
    try:
        shape = tuple(np.broadcast_shapes(x.shape, target))
    except ValueError:
        raise ShapeError(f"{x.type} does not broadcast with the shape {list(target)}") from None
    return ctx.emit(Op.BROADCAST_TO, [x], BroadcastToAttrs(shape))


@converter("Identity")
def identity(ctx: Context):
    return ctx.input(0)


@converter("Dropout")
def dropout(ctx: Context):
    """Identity at inference. The ratio (attribute < 12, input after) only acts in training."""
    ctx.reject_extra_outputs(1, "'mask'")
    ctx.attrs.int("seed")
    if ctx.opset < 12:
        ctx.attrs.float("ratio")
    training = ctx.optional_const(2, "training_mode") if ctx.opset >= 12 else None
    if training is not None and bool(training.reshape(-1)[0]):
        raise ctx.unsupported("training_mode", True, "convc compiles inference graphs")
    return ctx.input(0)


# DepthToSpace/SpaceToDepth as reshape -> transpose -> reshape; (split shape, permutation) per mode
def _blocks(ctx: Context) -> tuple[Value, int, str]:
    x = ctx.input(0)
    block = ctx.attrs.int("blocksize")
    mode = ctx.attrs.string("mode", "DCR")
    if block is None or block < 1:
        raise ctx.malformed(f"blocksize={block} must be a positive integer")
    if mode not in ("DCR", "CRD"):
        raise ctx.unsupported("mode", mode, "DCR or CRD")
    if x.type.rank != 4:
        raise ShapeError(f"needs an (N, C, H, W) input, got {x.type}")
    return x, block, mode


@converter("DepthToSpace")
def depth_to_space(ctx: Context):
    x, b, mode = _blocks(ctx)
    n, c, h, w = x.shape
    if c % (b * b):
        raise ShapeError(f"channels of {x.type} do not divide by blocksize^2 = {b * b}")
    if mode == "DCR":
        split, perm = (n, b, b, c // (b * b), h, w), (0, 3, 4, 1, 5, 2)
    else:
        split, perm = (n, c // (b * b), b, b, h, w), (0, 1, 4, 2, 5, 3)
    blocks = transpose(ctx, reshape(ctx, x, split, name=f"{x.name}_blocks"), perm)
    return reshape(ctx, blocks, (n, c // (b * b), h * b, w * b))


@converter("SpaceToDepth")
def space_to_depth(ctx: Context):
    x, b, mode = _blocks(ctx)
    n, c, h, w = x.shape
    if h % b or w % b:
        raise ShapeError(f"spatial size of {x.type} does not divide by blocksize {b}")
    perm = (0, 3, 5, 1, 2, 4) if mode == "DCR" else (0, 1, 3, 5, 2, 4)
    blocks = transpose(ctx, reshape(ctx, x, (n, c, h // b, b, w // b, b), name=f"{x.name}_blocks"), perm)
    return reshape(ctx, blocks, (n, c * b * b, h // b, w // b))

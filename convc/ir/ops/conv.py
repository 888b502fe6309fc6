"""Convolution, transposed convolution and matrix multiplication.

Layouts follow ONNX: data ``(N, C, D1, ..., Dn)``; conv weights ``(M, C/groups, k1, ..., kn)``;
transposed-conv weights ``(C, M/groups, k1, ..., kn)``. Convolution is cross-correlation
(the kernel is not flipped). Pads are per side: ``pads_begin[i]`` before and
``pads_end[i]`` after spatial axis ``i``.
"""
from __future__ import annotations

import dataclasses
import enum
import itertools
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from convc.ir.op import NoAttrs, Op, OpDef, opdef, register
from convc.ir.ops._util import broadcast_shapes, require, same_dtype
from convc.ir.types import TensorType


class Algorithm(str, enum.Enum):
    """How the backend computes a conv; AUTO leaves the choice to ``select_schedule``."""

    AUTO = "auto"
    DIRECT = "direct"
    IM2COL = "im2col"
    WINOGRAD = "winograd"
    ONE_BY_ONE = "1x1"
    DEPTHWISE = "depthwise"
    NARROW = "narrow"
    GENERIC = "generic"
    EXPAND_DEPTHWISE = "expand_depthwise"  # CPU: a 1x1 expansion and its depthwise conv in one kernel
    SUBPIXEL_SHUFFLE = "subpixel_shuffle"  # CPU: a phase conv writing its phases interleaved
    IMPLICIT_GEMM = "implicit_gemm"  # CUDA: the im2col GEMM without a patch matrix
    TENSOR_CORE = "tensorcore"       # CUDA: implicit GEMM on fp16 tensor cores


@dataclass(frozen=True)
class EpilogueStep:
    """One elementwise step applied to the conv's output inside its output loop.

    A unary ``op`` (relu, clip, sigmoid, ...) with its ``attrs``; or a binary ``op``
    (add, sub, mul) whose other operand is the conv's next extra input (a residual
    tensor, or a per-channel constant), broadcast to the output's shape.
    """

    op: Op
    attrs: Any = NoAttrs()

    @property
    def binary(self) -> bool:
        return self.op in EPILOGUE_BINARY


EPILOGUE_BINARY = frozenset({Op.ADD, Op.SUB, Op.MUL})


@dataclass(frozen=True)
class ConvAttrs:
    """N-d convolution: output size o = (i + pb + pe - d*(k-1) - 1) // s + 1 per axis.

    Inputs: data, weight, optional bias, then one operand per binary ``epilogue`` step.
    ``algorithm`` is the backend's choice of kernel (it does not change the result).
    """

    strides: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]
    dilations: tuple[int, ...]
    groups: int = 1
    epilogue: tuple[EpilogueStep, ...] = ()
    algorithm: Algorithm = Algorithm.AUTO

    @property
    def num_operands(self) -> int:
        """Extra inputs read by the epilogue."""
        return sum(step.binary for step in self.epilogue)

    @property
    def ndim(self) -> int:
        return len(self.strides)


@dataclass(frozen=True)
class ConvTransposeAttrs:
    """N-d transposed convolution (the adjoint of ``conv``).

    Output size o = s*(i-1) + output_padding + d*(k-1) + 1 - pb - pe per axis. Pads may
    be negative (the output is then extended with zeros rather than cropped).
    """

    strides: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]
    output_padding: tuple[int, ...]
    dilations: tuple[int, ...]
    groups: int = 1

    @property
    def ndim(self) -> int:
        return len(self.strides)


def conv_output_size(i: int, k: int, s: int, pb: int, pe: int, d: int) -> int:
    return (i + pb + pe - d * (k - 1) - 1) // s + 1


def conv_transpose_output_size(i: int, k: int, s: int, pb: int, pe: int, d: int, op: int) -> int:
    return s * (i - 1) + op + d * (k - 1) + 1 - pb - pe


def _check_lengths(name: str, attrs, n: int) -> None:
    fields = {f: getattr(attrs, f) for f in ("strides", "pads_begin", "pads_end", "dilations",
                                             "output_padding") if hasattr(attrs, f)}
    for field, value in fields.items():
        require(len(value) == n, f"{name}: {field}={value} has {len(value)} entries, "
                                 f"the data has {n} spatial axes")
    require(all(s >= 1 for s in attrs.strides), f"{name}: strides {attrs.strides} must be >= 1")
    require(all(d >= 1 for d in attrs.dilations), f"{name}: dilations {attrs.dilations} must be >= 1")
    require(attrs.groups >= 1, f"{name}: groups={attrs.groups} must be >= 1")


def _infer_conv(attrs: ConvAttrs, types: Sequence[TensorType]) -> list[TensorType]:
    types, operands = split_conv_inputs(attrs, types)
    x, w = types[0], types[1]
    dtype = same_dtype("conv", [*types, *operands])
    n = x.rank - 2
    require(n >= 1 and w.rank == x.rank, f"conv: data {x} and weight {w} ranks do not fit")
    _check_lengths("conv", attrs, n)
    require(min(attrs.pads_begin + attrs.pads_end, default=0) >= 0,
            f"conv: pads must be non-negative, got {attrs.pads_begin}/{attrs.pads_end}")
    c, m, g = x.shape[1], w.shape[0], attrs.groups
    require(c % g == 0 and m % g == 0, f"conv: channels {c} and filters {m} must divide by groups {g}")
    require(w.shape[1] * g == c, f"conv: weight {w} expects {w.shape[1] * g} input channels, data has {c}")
    if len(types) == 3:
        require(types[2].shape == (m,), f"conv: bias {types[2]} must have shape ({m},)")
    out = [conv_output_size(i, k, s, pb, pe, d) for i, k, s, pb, pe, d in zip(
        x.shape[2:], w.shape[2:], attrs.strides, attrs.pads_begin, attrs.pads_end, attrs.dilations)]
    require(all(o >= 1 for o in out), f"conv: output size {out} is empty (data {x}, kernel {w.shape[2:]})")
    result = TensorType((x.shape[0], m, *out), dtype)
    for step in attrs.epilogue:
        if not step.binary:
            require(opdef(step.op).infer(step.attrs, [result]) == [result],
                    f"conv: epilogue step {step.op} does not preserve {result}")
    for operand in operands:
        require(broadcast_shapes("conv epilogue", operand.shape, result.shape) == result.shape,
                f"conv: epilogue operand {operand} does not broadcast to {result}")
    return [result]


def split_conv_inputs(attrs: ConvAttrs, inputs: Sequence) -> tuple[list, list]:
    """(data, weight[, bias]) and the epilogue operands, from a conv node's inputs."""
    cut = len(inputs) - attrs.num_operands
    require(cut in (2, 3), f"conv: {len(inputs)} inputs do not fit an epilogue reading {attrs.num_operands}")
    return list(inputs[:cut]), list(inputs[cut:])


def constant_weights(graph, node) -> bool:
    """Whether a conv node's weight (and bias) are constants of ``graph`` (then the conv
    kernels, with weights packed at compile time, can compute it)."""
    (_, w, *bias), _ = split_conv_inputs(node.attrs, node.inputs)
    return all(graph.is_constant(v) for v in (w, *bias))


def apply_epilogue(attrs: ConvAttrs, y: np.ndarray, operands: Sequence[np.ndarray]) -> np.ndarray:
    """The epilogue of a conv, on its (biased) output ``y``."""
    pending = iter(operands)
    for step in attrs.epilogue:
        if step.binary:
            y = opdef(step.op).reference(step.attrs, [y, next(pending)])[0]
        else:
            y = opdef(step.op).reference(step.attrs, [y])[0]
    return y


def _windows(xp: np.ndarray, tap: tuple[int, ...], strides, dilations, out) -> np.ndarray:
    index = (slice(None), slice(None)) + tuple(
        slice(t * d, t * d + s * (o - 1) + 1, s) for t, s, d, o in zip(tap, strides, dilations, out))
    return xp[index]


def conv_reference(attrs: ConvAttrs, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None,
                   *operands: np.ndarray) -> np.ndarray:
    """Grouped, strided, dilated N-d cross-correlation, one kernel tap at a time, then the epilogue."""
    if attrs.epilogue:
        (x, w, *bias), operands = split_conv_inputs(attrs, [x, w, *([] if b is None else [b]), *operands])
        plain = dataclasses.replace(attrs, epilogue=())
        return apply_epilogue(attrs, conv_reference(plain, x, w, *bias), operands).astype(x.dtype)
    n, g = x.ndim - 2, attrs.groups
    xp = np.pad(x, [(0, 0), (0, 0)] + list(zip(attrs.pads_begin, attrs.pads_end)))
    (out_type,) = _infer_conv(attrs, [TensorType.of(x), TensorType.of(w)])
    out = out_type.shape[2:]
    batch, c, m = x.shape[0], x.shape[1], w.shape[0]
    wg = w.reshape(g, m // g, c // g, *w.shape[2:])
    acc = np.zeros((batch, g, m // g, *out), dtype=np.float64)
    for tap in itertools.product(*(range(k) for k in w.shape[2:])):
        patch = _windows(xp, tap, attrs.strides, attrs.dilations, out).reshape(batch, g, c // g, *out)
        acc += np.einsum("ngc...,gmc->ngm...", patch, wg[(Ellipsis,) + tap], optimize=True)
    y = acc.reshape(batch, m, *out)
    if b is not None:
        y = y + b.reshape((1, m) + (1,) * n)
    return y.astype(x.dtype)


def _infer_conv_transpose(attrs: ConvTransposeAttrs, types: Sequence[TensorType]) -> list[TensorType]:
    x, w = types[0], types[1]
    dtype = same_dtype("conv_transpose", types)
    n = x.rank - 2
    require(n >= 1 and w.rank == x.rank, f"conv_transpose: data {x} and weight {w} ranks do not fit")
    _check_lengths("conv_transpose", attrs, n)
    c, g = x.shape[1], attrs.groups
    require(w.shape[0] == c, f"conv_transpose: weight {w} expects {w.shape[0]} input channels, data has {c}")
    require(c % g == 0, f"conv_transpose: channels {c} must divide by groups {g}")
    m = w.shape[1] * g
    if len(types) == 3:
        require(types[2].shape == (m,), f"conv_transpose: bias {types[2]} must have shape ({m},)")
    require(all(0 <= p for p in attrs.output_padding),
            f"conv_transpose: output_padding {attrs.output_padding} must be non-negative")
    out = [conv_transpose_output_size(i, k, s, pb, pe, d, op) for i, k, s, pb, pe, d, op in zip(
        x.shape[2:], w.shape[2:], attrs.strides, attrs.pads_begin, attrs.pads_end, attrs.dilations,
        attrs.output_padding)]
    require(all(o >= 1 for o in out), f"conv_transpose: output size {out} is empty")
    return [TensorType((x.shape[0], m, *out), dtype)]


def conv_transpose_reference(attrs: ConvTransposeAttrs, x: np.ndarray, w: np.ndarray,
                             b: np.ndarray | None = None) -> np.ndarray:
    """The scatter definition: each input element adds its weighted kernel to the output.

    Input position i, tap t lands on full-output position s*i + d*t; the result is the
    window of that full output starting at ``pads_begin`` (zeros where it runs past).
    """
    n, g = x.ndim - 2, attrs.groups
    (out_type,) = _infer_conv_transpose(attrs, [TensorType.of(x), TensorType.of(w)])
    batch, c = x.shape[:2]
    mg = w.shape[1]
    ins, ks = x.shape[2:], w.shape[2:]
    full = [s * (i - 1) + d * (k - 1) + 1 for i, k, s, d in zip(ins, ks, attrs.strides, attrs.dilations)]
    yfull = np.zeros((batch, g, mg, *full), dtype=np.float64)
    xg = x.reshape(batch, g, c // g, *ins)
    wg = w.reshape(g, c // g, mg, *ks)
    for tap in itertools.product(*(range(k) for k in ks)):
        contrib = np.einsum("ngc...,gcm->ngm...", xg, wg[(Ellipsis,) + tap], optimize=True)
        index = (slice(None),) * 3 + tuple(slice(t * d, t * d + s * (i - 1) + 1, s)
                                           for t, s, d, i in zip(tap, attrs.strides, attrs.dilations, ins))
        yfull[index] += contrib
    yfull = yfull.reshape(batch, g * mg, *full)
    out = out_type.shape[2:]
    y = np.zeros((batch, g * mg, *out), dtype=np.float64)
    src, dst = [slice(None)] * 2, [slice(None)] * 2
    for f, o, pb in zip(full, out, attrs.pads_begin):
        lo, hi = max(pb, 0), min(f, pb + o)
        if hi <= lo:
            return _add_bias(y, b, n).astype(x.dtype)
        src.append(slice(lo, hi))
        dst.append(slice(lo - pb, hi - pb))
    y[tuple(dst)] = yfull[tuple(src)]
    return _add_bias(y, b, n).astype(x.dtype)


def _add_bias(y: np.ndarray, b: np.ndarray | None, n: int) -> np.ndarray:
    return y if b is None else y + b.reshape((1, -1) + (1,) * n)


def _infer_matmul(attrs, types: Sequence[TensorType]) -> list[TensorType]:
    a, b = types
    dtype = same_dtype("matmul", types)
    require(a.rank >= 1 and b.rank >= 1, f"matmul: operands {a} and {b} must have rank >= 1")
    ka = a.shape[-1]
    kb = b.shape[0] if b.rank == 1 else b.shape[-2]
    require(ka == kb, f"matmul: inner dimensions differ: {a} @ {b}")
    batch = broadcast_shapes("matmul", a.shape[:-2], b.shape[:-2])
    rows = a.shape[-2:-1] if a.rank >= 2 else ()
    cols = b.shape[-1:] if b.rank >= 2 else ()
    return [TensorType((*batch, *rows, *cols), dtype)]


register(OpDef(Op.CONV, ConvAttrs, (2, 16), _infer_conv,
               lambda a, xs: [conv_reference(a, *xs)], heavy=True))
register(OpDef(Op.CONV_TRANSPOSE, ConvTransposeAttrs, (2, 3), _infer_conv_transpose,
               lambda a, xs: [conv_transpose_reference(a, *xs)], heavy=True))
register(OpDef(Op.MATMUL, NoAttrs, (2, 2), _infer_matmul,
               lambda a, xs: [np.matmul(xs[0], xs[1])], heavy=True))

"""Hypothesis strategies for IR tests: conv / transposed-conv attributes and random graphs.

Sizes stay small so that the NumPy reference interpreter runs each example in
milliseconds. Array data is not drawn by hypothesis (slow to shrink, no value in it):
draw a seed and use ``random_inputs``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from hypothesis import strategies as st

from convc.ir import ConvAttrs, ConvTransposeAttrs, Graph, GraphBuilder, Op, TensorType, Value, interpret
from convc.ir.ops.movement import ReshapeAttrs, TransposeAttrs
from convc.ir.ops.normalization import BatchNormAttrs


@dataclass(frozen=True)
class ConvCase:
    """A conv or transposed conv: attributes, data shape, weight shape, whether it has a bias."""

    attrs: ConvAttrs | ConvTransposeAttrs
    x_shape: tuple[int, ...]
    w_shape: tuple[int, ...]
    bias: bool


def random_inputs(graph: Graph, seed: int) -> dict[str, np.ndarray]:
    """Standard-normal data (small integers for integer inputs) for every graph input."""
    rng = np.random.default_rng(seed)
    return {v.name: rng.standard_normal(v.shape).astype(v.dtype) for v in graph.inputs}


def _axis_limits(ndim: int) -> tuple[int, int]:
    """(max input size, max kernel size) per axis, smaller for 3-D."""
    return (5, 4) if ndim < 3 else (3, 3)


@st.composite
def conv_cases(draw, ndim: st.SearchStrategy[int] = st.integers(1, 3)) -> ConvCase:
    """Grouped, strided, dilated, asymmetrically padded convs with a non-empty output."""
    n = draw(ndim)
    max_i, max_k = _axis_limits(n)
    g = draw(st.integers(1, 3))
    c, m = g * draw(st.integers(1, 2)), g * draw(st.integers(1, 2))
    ks, ss, ds, pbs, pes, xs = [], [], [], [], [], []
    for _ in range(n):
        k, s, d = draw(st.integers(1, max_k)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
        span = d * (k - 1) + 1
        pb = draw(st.integers(0, span))
        pe = draw(st.integers(0, span))
        i = draw(st.integers(max(1, span - pb - pe), max(1, span - pb - pe) + max_i))
        ks.append(k), ss.append(s), ds.append(d), pbs.append(pb), pes.append(pe), xs.append(i)
    attrs = ConvAttrs(tuple(ss), tuple(pbs), tuple(pes), tuple(ds), g)
    return ConvCase(attrs, (draw(st.integers(1, 2)), c, *xs), (m, c // g, *ks), draw(st.booleans()))


@st.composite
def conv_transpose_cases(draw, ndim: st.SearchStrategy[int] = st.integers(1, 3)) -> ConvCase:
    """Transposed convs over the whole attribute space the IR allows.

    Kernel sizes not divisible by the stride, output_padding below max(stride,
    dilation) as ONNX requires, pads from -1 to beyond d*(k-1) (so that the
    zero-inserted conv must crop), any groups.
    """
    n = draw(ndim)
    max_i, max_k = _axis_limits(n)
    g = draw(st.integers(1, 3))
    c, mg = g * draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ks, ss, ds, pbs, pes, ops, xs = [], [], [], [], [], [], []
    for _ in range(n):
        k, s, d, i = (draw(st.integers(1, max_k)), draw(st.integers(1, 3)), draw(st.integers(1, 2)),
                      draw(st.integers(1, max_i)))
        op = draw(st.integers(0, max(s, d) - 1))
        full = s * (i - 1) + d * (k - 1) + 1 + op  # output size before the pads
        pb = draw(st.integers(-1, min(d * (k - 1) + 2, full)))
        pe = draw(st.integers(-1, min(d * (k - 1) + 2, full - pb - 1)))
        for lst, v in zip((ks, ss, ds, pbs, pes, ops, xs), (k, s, d, pb, pe, op, i)):
            lst.append(v)
    attrs = ConvTransposeAttrs(tuple(ss), tuple(pbs), tuple(pes), tuple(ops), tuple(ds), g)
    return ConvCase(attrs, (draw(st.integers(1, 2)), c, *xs), (c, mg, *ks), draw(st.booleans()))


def build_conv_graph(case: ConvCase, seed: int, *, dtype: str = "float32",
                     const_weight: bool = True) -> Graph:
    """A one-node graph ``y = conv[_transpose](x, w[, b])``; weight and bias are constants
    or (``const_weight=False``) graph inputs."""
    rng = np.random.default_rng(seed)
    op = Op.CONV if isinstance(case.attrs, ConvAttrs) else Op.CONV_TRANSPOSE
    b = GraphBuilder("conv")
    x = b.add_input("x", TensorType(case.x_shape, dtype))
    params = [("w", case.w_shape)]
    if case.bias:
        m = case.w_shape[0] if op is Op.CONV else case.w_shape[1] * case.attrs.groups
        params.append(("b", (m,)))
    values = [b.constant(rng.standard_normal(shape).astype(dtype), name) if const_weight
              else b.add_input(name, TensorType(shape, dtype)) for name, shape in params]
    y = b.emit1(op, [x, *values], case.attrs, name="layer", origin=f"test:{op} 'layer'")
    return b.build([y], ["y"])


# -- random graphs ------------------------------------------------------------------
# A layer maps a feature map (N, C, *S) to another one; a head ends the graph.
Layer = Callable[[Callable, GraphBuilder, Value, np.random.Generator], Value]


def _weights(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    return (rng.standard_normal(shape) / np.sqrt(max(1, int(np.prod(shape[1:]))))).astype(dtype)


def _conv_layer(draw, b, x, rng):
    n, c = x.type.rank - 2, x.shape[1]
    g = draw(st.sampled_from([d for d in (1, 2, c) if c % d == 0]))
    m = g * draw(st.integers(1, 2))
    ks = [draw(st.integers(1, min(3, i))) for i in x.shape[2:]]  # with "same"-style pads: output >= input
    pads = [(k - 1) // 2 for k in ks]
    extra = [draw(st.integers(0, 1)) for _ in ks]
    attrs = ConvAttrs((1,) * n, tuple(pads), tuple(p + e for p, e in zip(pads, extra)), (1,) * n, g)
    inputs = [x, b.constant(_weights(rng, (m, c // g, *ks), x.dtype), "w")]
    if draw(st.booleans()):
        inputs.append(b.constant(rng.standard_normal(m).astype(x.dtype), "b"))
    return b.emit1(Op.CONV, inputs, attrs, origin="test:Conv")


def _conv_transpose_layer(draw, b, x, rng):
    n, c = x.type.rank - 2, x.shape[1]
    g = draw(st.sampled_from([d for d in (1, c) if c % d == 0]))
    ks = [draw(st.integers(1, 3)) for _ in range(n)]
    ss = [draw(st.integers(1, 2)) for _ in range(n)]
    ops = [draw(st.integers(0, s - 1)) for s in ss]
    fulls = [s * (i - 1) + k + op for i, k, s, op in zip(x.shape[2:], ks, ss, ops)]
    pads = [draw(st.integers(0, min(k - 1, (f - 1) // 2))) for k, f in zip(ks, fulls)]
    attrs = ConvTransposeAttrs(tuple(ss), tuple(pads), tuple(pads), tuple(ops), (1,) * n, g)
    w = b.constant(_weights(rng, (c, draw(st.integers(1, 2)), *ks), x.dtype), "wt")
    return b.emit1(Op.CONV_TRANSPOSE, [x, w], attrs, origin="test:ConvTranspose")


def _batch_norm_layer(draw, b, x, rng):
    c = x.shape[1]
    params = [rng.standard_normal(c), rng.standard_normal(c), rng.standard_normal(c), rng.uniform(0.5, 2, c)]
    consts = [b.constant(p.astype(x.dtype), name) for p, name in zip(params, ("gamma", "beta", "mean", "var"))]
    return b.emit1(Op.BATCH_NORM, [x, *consts], BatchNormAttrs(1e-5), origin="test:BatchNormalization")


def _relu_layer(draw, b, x, rng):
    return b.emit1(Op.RELU, [x])


def _residual_layer(draw, b, x, rng):
    """x + f(x): the value x gets a second user (blocks conv+BN folding when x is a conv)."""
    return b.emit1(Op.ADD, [x, b.emit1(Op.RELU, [x])])


def _constant_branch_layer(draw, b, x, rng):
    """x * (c1 + c2) with the constant arithmetic left unfolded, for fold_constants."""
    shape = (1, x.shape[1]) + (1,) * (x.type.rank - 2)
    c1, c2 = (b.constant(rng.standard_normal(shape).astype(x.dtype), "c") for _ in range(2))
    return b.emit1(Op.MUL, [x, b.emit1(Op.ADD, [c1, c2], fold=False)])


def _dead_branch_layer(draw, b, x, rng):
    b.emit1(Op.SIGMOID, [x])  # nobody reads it
    return x


def _movement_layer(draw, b, x, rng):
    """A reshape pair and a transpose pair that cancel, for simplify."""
    y = b.emit1(Op.RESHAPE, [x], ReshapeAttrs((x.shape[0], x.type.size // x.shape[0])))
    y = b.emit1(Op.RESHAPE, [y], ReshapeAttrs(x.shape))
    perm = tuple(draw(st.permutations(range(x.type.rank))))
    y = b.emit1(Op.TRANSPOSE, [y], TransposeAttrs(perm))
    return b.emit1(Op.TRANSPOSE, [y], TransposeAttrs(tuple(int(i) for i in np.argsort(perm))))


LAYERS: tuple[Layer, ...] = (_conv_layer, _conv_transpose_layer, _batch_norm_layer, _relu_layer,
                             _residual_layer, _constant_branch_layer, _dead_branch_layer, _movement_layer)


def _flatten_fc_head(draw, b, x, rng):
    flat = b.emit1(Op.RESHAPE, [x], ReshapeAttrs((x.shape[0], x.type.size // x.shape[0])), origin="test:Flatten")
    m = draw(st.integers(1, 3))
    y = b.emit1(Op.MATMUL, [flat, b.constant(_weights(rng, (flat.shape[1], m), x.dtype), "fc")], origin="test:Gemm")
    if draw(st.booleans()):  # Gemm's bias
        y = b.emit1(Op.ADD, [y, b.constant(rng.standard_normal(m).astype(x.dtype), "fc_bias")], origin="test:Gemm")
    return y


def _last_axis_fc_head(draw, b, x, rng):
    w = b.constant(_weights(rng, (x.shape[-1], draw(st.integers(1, 3))), x.dtype), "fc")
    return b.emit1(Op.MATMUL, [x, w], origin="test:MatMul")


def _left_constant_head(draw, b, x, rng):
    a = b.constant(_weights(rng, (draw(st.integers(1, 3)), x.shape[-2]), x.dtype), "lhs")
    return b.emit1(Op.MATMUL, [a, x], origin="test:MatMul")


def _no_head(draw, b, x, rng):
    return x


HEADS = (_flatten_fc_head, _last_axis_fc_head, _left_constant_head, _no_head)


@st.composite
def random_graphs(draw, layers: tuple[Layer, ...] = LAYERS, max_layers: int = 4,
                  dtype: str = "float32") -> Graph:
    """A random small CNN-like graph: an (N, C, *S) input, a stack of layers, a head.

    Each layer is drawn from ``layers``; two outputs are returned when the graph has a
    value besides the head's (the last feature map), to exercise ``output_names``.
    """
    n = draw(st.integers(1, 3))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)),
             *(draw(st.integers(1, 4 if n < 3 else 3)) for _ in range(n)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    b = GraphBuilder("random")
    x = b.add_input("x", TensorType(shape, dtype))
    for layer in draw(st.lists(st.sampled_from(layers), min_size=1, max_size=max_layers)):
        x = layer(draw, b, x, rng)
    head = draw(st.sampled_from(HEADS))(draw, b, x, rng)
    if head is x or not draw(st.booleans()):
        return b.build([head], ["out"])
    return b.build([head, x], ["out", "features"])


def assert_equivalent(before: Graph, after: Graph, seed: int, *, rtol: float = 1e-5, atol: float = 1e-5) -> None:
    """The reference interpreter gives ``before`` and ``after`` the same outputs and names."""
    assert after.output_names == before.output_names
    inputs = random_inputs(before, seed)
    for name, want, got in zip(before.output_names, interpret(before, inputs), interpret(after, inputs)):
        assert got.shape == want.shape and got.dtype == want.dtype, name
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=name)


def adjoint_case(case: "ConvCase", seed: int):
    """Random x, w, y and conv(x) for the adjoint identity <conv(x), y> = <x, conv_transpose(y)>,
    with the ConvTransposeAttrs of the transposed conv (same weight and attributes)."""
    from convc.ir import ConvTransposeAttrs
    from convc.ir.ops.conv import conv_reference
    rng = np.random.default_rng(seed)
    a = case.attrs
    x, w = rng.standard_normal(case.x_shape), rng.standard_normal(case.w_shape)
    cx = conv_reference(a, x, w)
    y = rng.standard_normal(cx.shape)
    out_pad = adjoint_output_padding(a, x.shape, cx.shape, w.shape)
    return x, w, y, cx, ConvTransposeAttrs(a.strides, a.pads_begin, a.pads_end, out_pad, a.dilations, a.groups)


def adjoint_output_padding(attrs, x_shape, y_shape, w_shape) -> tuple[int, ...]:
    """The output_padding that makes conv_transpose(y) as large as x, for y = conv(x):
    it restores the tail of x the conv's stride dropped."""
    return tuple(i - (s * (o - 1) + d * (k - 1) + 1 - pb - pe) for i, o, k, s, d, pb, pe in zip(
        x_shape[2:], y_shape[2:], w_shape[2:], attrs.strides, attrs.dilations, attrs.pads_begin, attrs.pads_end))

"""Convolution lowering: 1-D/2-D/3-D, strides, dilations, groups, asymmetric pads, bias."""
from __future__ import annotations

import numpy as np
import pytest
from tvm import te

from convc.ir import ConvAttrs, GraphBuilder, Op, TensorType
from convc.ir.ops.conv import EpilogueStep
from convc.ir.ops.elementwise import AlphaAttrs, ClipAttrs
from convc.lower import build
from convc.lower.conv import conv_nd
from convc.schedules.cpu import ScheduleContext
from convc.schedules.cpu.conv import direct_conv, direct_conv_width
from lower_check import TARGET, check

# (data shape, filters, kernel, strides, pads_begin, pads_end, dilations, groups, bias)
CASES = [
    ((1, 3, 9), 4, (3,), (1,), (1,), (1,), (1,), 1, True),
    ((2, 4, 11), 6, (2,), (3,), (0,), (2,), (2,), 2, False),
    ((1, 3, 7, 7), 8, (3, 3), (1, 1), (1, 1), (1, 1), (1, 1), 1, True),
    ((1, 5, 9, 8), 7, (3, 2), (2, 1), (1, 0), (0, 2), (1, 2), 1, False),  # odd channels, asymmetric
    ((2, 6, 8, 9), 6, (3, 3), (2, 2), (2, 1), (1, 2), (2, 1), 3, True),
    ((1, 8, 10, 10), 8, (3, 3), (1, 1), (1, 1), (1, 1), (1, 1), 8, True),  # depthwise
    ((1, 4, 7, 7), 12, (5, 5), (3, 3), (2, 2), (2, 2), (1, 1), 4, False),  # depthwise multiplier 3
    ((1, 16, 6, 6), 10, (1, 1), (1, 1), (0, 0), (0, 0), (1, 1), 1, True),  # 1x1, 10 not a multiple of 8
    ((1, 3, 5, 5), 3, (5, 5), (1, 1), (0, 0), (0, 0), (1, 1), 1, False),  # kernel covers the map
    ((1, 2, 5, 6, 7), 4, (3, 2, 3), (1, 2, 1), (1, 0, 1), (1, 1, 0), (1, 1, 2), 2, True),
    ((1, 3, 4, 4, 4), 5, (2, 2, 2), (2, 2, 2), (0, 0, 0), (1, 1, 1), (1, 1, 1), 1, False),
    ((3, 2, 13, 11), 9, (4, 3), (3, 2), (3, 0), (0, 1), (1, 3), 1, True),  # prime sizes, batch 3
    ((1, 3, 5, 11), 5, (1, 1), (1, 1), (0, 0), (0, 0), (1, 1), 1, True),  # only the generic schedule fits
]


def conv_graph(x_shape, filters, kernel, strides, pb, pe, dil, groups, bias, seed=0):
    rng = np.random.default_rng(seed)
    b = GraphBuilder("conv")
    x = b.add_input("x", TensorType(x_shape, "float32"))
    w = b.constant(rng.standard_normal((filters, x_shape[1] // groups, *kernel)).astype("float32"), "w")
    inputs = [x, w] + ([b.constant(rng.standard_normal(filters).astype("float32"), "b")] if bias else [])
    y = b.emit1(Op.CONV, inputs, ConvAttrs(strides, pb, pe, dil, groups))
    return b.build([y])


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{len(c[0]) - 2}d-g{c[7]}-m{c[1]}")
def test_conv_matches_reference(case):
    check(conv_graph(*case), rtol=1e-4, atol=1e-4)


def test_conv_with_weights_as_input():
    """The weight (and bias) may be computed tensors, not only constants."""
    b = GraphBuilder("conv_inputs")
    x = b.add_input("x", TensorType((1, 4, 6, 6), "float32"))
    w = b.add_input("w", TensorType((4, 2, 3, 3), "float32"))
    bias = b.add_input("bias", TensorType((4,), "float32"))
    y = b.emit1(Op.CONV, [x, w, bias], ConvAttrs((1, 1), (1, 1), (0, 0), (1, 1), 2))
    check(b.build([y]), rtol=1e-4, atol=1e-4)


def test_conv_epilogue_bias_activation_residual():
    """Fused epilogue: bias, leaky relu, a residual add, a per-channel scale, a clip."""
    rng = np.random.default_rng(1)
    b = GraphBuilder("epilogue")
    x = b.add_input("x", TensorType((1, 4, 6, 6), "float32"))
    res = b.add_input("res", TensorType((1, 8, 6, 6), "float32"))
    w = b.constant(rng.standard_normal((8, 4, 3, 3)).astype("float32"), "w")
    bias = b.constant(rng.standard_normal(8).astype("float32"), "b")
    scale = b.constant(rng.standard_normal((1, 8, 1, 1)).astype("float32"), "scale")
    steps = (EpilogueStep(Op.LEAKY_RELU, AlphaAttrs(0.1)), EpilogueStep(Op.ADD), EpilogueStep(Op.MUL),
             EpilogueStep(Op.CLIP, ClipAttrs(-1.0, 2.0)))
    y = b.emit1(Op.CONV, [x, w, bias, res, scale], ConvAttrs((1, 1), (1, 1), (1, 1), (1, 1), 1, steps))
    check(b.build([y]), rtol=1e-4, atol=1e-4)


def _conv_func(x_shape, filters, kernel, strides, pb, pe, dil, groups, bias):
    attrs = ConvAttrs(strides, pb, pe, dil, groups)
    x = te.placeholder(x_shape, "float32", "x")
    w = te.placeholder((filters, x_shape[1] // groups, *kernel), "float32", "w")
    b = te.placeholder((filters,), "float32", "b")
    out = (x_shape[0], filters, *[(i + p + q - d * (k - 1) - 1) // s + 1 for i, k, s, p, q, d in
                                  zip(x_shape[2:], kernel, strides, pb, pe, dil)])
    y = conv_nd(x, w, b if bias else None, attrs, out)
    args = [x, w, b, y] if bias else [x, w, y]
    return te.create_prim_func(args), ScheduleContext(Op.CONV, attrs, "float32"), out


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{len(c[0]) - 2}d-g{c[7]}-m{c[1]}")
def test_register_tile_schedules_apply_or_decline_cleanly(case):
    """Both register-tile schedules handle every rank/stride/group/dilation; they decline only when
    the channel count has no even vector, resp. the output width no block (a prime above 8)."""
    func, ctx, out = _conv_func(*case)
    assert (direct_conv(func, ctx) is None) == (case[1] % 2 == 1)
    width = out[-1]
    assert (direct_conv_width(func, ctx) is None) == all(width % d for d in range(2, min(width, 8) + 1))


@pytest.mark.parametrize("candidate,case", [(direct_conv, CASES[2]), (direct_conv_width, CASES[3])])
def test_register_tile_is_parallel_vectorised_and_padding_free(candidate, case):
    func, ctx, _ = _conv_func(*case)
    text = candidate(func, ctx).mod["main"].script()
    assert "T.parallel" in text and "T.vectorized" in text and "T.unroll" in text
    assert 'T.sblock("pad")' not in text

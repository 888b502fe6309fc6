"""conv_transpose_to_conv: a transposed conv becomes a stride-1 conv over zero-inserted data.

Oracles: the IR's scatter-definition reference (semantic sweep), the adjoint identity
<conv(x), y> = <x, conv_transpose(y)> with the conv reference, onnxruntime's
ConvTranspose, and hand-worked 1-D examples.
"""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from convc.ir import ConvAttrs, ConvTransposeAttrs, GraphBuilder, Op, TensorType, interpret, verify
from convc.passes.conv_transpose_to_conv import PASS
from strategies import (adjoint_case, assert_equivalent, build_conv_graph, conv_cases,
                        conv_transpose_cases)


def ops(graph):
    return [n.op for n in graph.nodes]


def the_conv(graph):
    (conv,) = [n for n in graph.nodes if n.op is Op.CONV]
    return conv


@settings(max_examples=300, deadline=None)
@given(conv_transpose_cases(), st.integers(0, 2**16), st.booleans())
def test_same_outputs_as_the_scatter_definition(case, seed, const_weight):
    before = build_conv_graph(case, seed, dtype="float64", const_weight=const_weight)
    after = PASS.run(before)
    verify(after, rewritten=True)
    assert Op.CONV_TRANSPOSE not in ops(after)
    assert ops(after).count(Op.CONV) <= 1  # none only when the crop leaves no data (output = bias)
    assert_equivalent(before, after, seed, rtol=1e-10, atol=1e-10)


def conv_transpose_via_pass(y: np.ndarray, w: np.ndarray, attrs: ConvTransposeAttrs) -> np.ndarray:
    b = GraphBuilder("ct")
    x = b.add_input("y", TensorType(y.shape, "float64"))
    out = b.emit1(Op.CONV_TRANSPOSE, [x, b.constant(w, "w")], attrs)
    graph = PASS.run(b.build([out]))
    assert Op.CONV_TRANSPOSE not in ops(graph)
    return interpret(graph, {"y": y})[0]


@settings(max_examples=200, deadline=None)
@given(conv_cases(), st.integers(0, 2**16))
def test_adjoint_of_conv(case, seed):
    """<conv(x), y> = <x, conv_transpose(y)> with the same weight, pads, strides, dilations, groups."""
    x, w, y, cx, ct = adjoint_case(case, seed)
    cty = conv_transpose_via_pass(y, w, ct)
    assert cty.shape == x.shape
    np.testing.assert_allclose(np.vdot(cx, y), np.vdot(x, cty), rtol=1e-9, atol=1e-9)


ORT_CASES = [  # strides, pads (onnx order: begins then ends), output_padding, dilations, group, kernel
    ((2, 2), (1, 1, 1, 1), (1, 1), (1, 1), 1, (3, 3)),
    ((2, 3), (0, 1, 2, 0), (1, 0), (1, 2), 2, (3, 2)),
    ((3, 1), (2, 0, 0, 3), (2, 0), (1, 1), 1, (2, 4)),
    ((1, 2), (0, 0, 0, 0), (0, 1), (2, 1), 3, (2, 3)),
]


@pytest.mark.parametrize("strides,pads,out_pad,dilations,group,kernel", ORT_CASES)
def test_matches_onnxruntime(strides, pads, out_pad, dilations, group, kernel):
    rng = np.random.default_rng(0)
    c, mg = 2 * group, 2
    x = rng.standard_normal((2, c, 4, 5)).astype(np.float32)
    w = rng.standard_normal((c, mg, *kernel)).astype(np.float32)
    bias = rng.standard_normal(mg * group).astype(np.float32)
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], strides=strides, pads=pads,
                            output_padding=out_pad, dilations=dilations, group=group)
    model = helper.make_model(helper.make_graph(
        [node], "ct", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(w, "w"), onnx.numpy_helper.from_array(bias, "b")]),
        opset_imports=[helper.make_opsetid("", 17)])
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    attrs = ConvTransposeAttrs(strides, pads[:2], pads[2:], out_pad, dilations, group)
    b = GraphBuilder("ct")
    xin = b.add_input("x", TensorType(x.shape, "float32"))
    y = b.emit1(Op.CONV_TRANSPOSE, [xin, b.constant(w, "w"), b.constant(bias, "b")], attrs)
    graph = PASS.run(b.build([y]))
    assert Op.CONV_TRANSPOSE not in ops(graph)
    np.testing.assert_allclose(interpret(graph, {"x": x})[0], want, rtol=1e-4, atol=1e-4)


def one_d(x, w, attrs):
    b = GraphBuilder("ct")
    xin = b.add_input("x", TensorType(np.shape(x), "float64"))
    y = b.emit1(Op.CONV_TRANSPOSE, [xin, b.constant(np.asarray(w, np.float64), "w")], attrs,
                name="up1", origin="onnx:ConvTranspose 'up1'")
    graph = PASS.run(b.build([y], ["y"]))
    verify(graph, rewritten=True)
    return graph, interpret(graph, {"x": np.asarray(x, np.float64)})[0]


def test_hand_worked_stride_2_with_output_padding():
    # y[2i + t] += x[i] * w[t]: x = [1, 10, 100], w = [1, 2, 3], one trailing output_padding zero
    graph, y = one_d([[[1, 10, 100]]], [[[1, 2, 3]]], ConvTransposeAttrs((2,), (0,), (0,), (1,), (1,)))
    np.testing.assert_array_equal(y, [[[1, 2, 13, 20, 130, 200, 300, 0]]])
    assert ops(graph) == [Op.RESHAPE, Op.PAD, Op.RESHAPE, Op.CONV]  # zero insertion, then the conv
    assert [n.outputs[0].shape for n in graph.nodes[:3]] == [(1, 1, 3, 1), (1, 1, 3, 2), (1, 1, 6)]
    conv = the_conv(graph)
    np.testing.assert_array_equal(graph.constants[conv.inputs[1]], [[[3, 2, 1]]])  # flipped
    # begin: d*(k-1) - p = 2; end: 2 + output_padding - the s-1 zeros already inserted after x[-1]
    assert conv.attrs == ConvAttrs((1,), (2,), (2,), (1,), 1)
    assert conv.origin == "onnx:ConvTranspose 'up1' | conv_transpose_to_conv"


def test_hand_worked_crop_when_pad_exceeds_the_kernel_span():
    # stride 1, k = 3, pads_begin = 3 > d*(k-1) = 2: the full output [1, 12, 123, 1230, 2300, 3000]
    # loses its first 3 entries; the conv sees the data cropped by one element
    graph, y = one_d([[[1, 10, 100, 1000]]], [[[1, 2, 3]]], ConvTransposeAttrs((1,), (3,), (0,), (0,), (1,)))
    np.testing.assert_array_equal(y, [[[1230, 2300, 3000]]])
    assert ops(graph) == [Op.SLICE, Op.CONV]
    assert graph.nodes[0].attrs.starts[2] == 1
    assert the_conv(graph).attrs.pads_begin == (0,) and the_conv(graph).attrs.pads_end == (2,)


@pytest.mark.parametrize("groups,want", [
    (1, [[[1], [3], [5], [7]], [[2], [4], [6], [8]]]),
    (2, [[[1], [3]], [[2], [4]], [[5], [7]], [[6], [8]]]),
])
def test_kernel_channel_axes_swap_per_group(groups, want):
    # weight (C=4, M/g, 1): w[c, m] = 2c + m + 1; the conv weight is (M, C/g, 1) with [m, c] = w[c, m]
    w = np.arange(1, 9, dtype=np.float64).reshape(4, 2, 1)
    attrs = ConvTransposeAttrs((1,), (0,), (0,), (0,), (1,), groups)
    graph, _ = one_d(np.zeros((1, 4, 2)), w, attrs)
    np.testing.assert_array_equal(graph.constants[the_conv(graph).inputs[1]], want)
    assert the_conv(graph).attrs.groups == groups


def test_non_constant_weight_becomes_nodes():
    b = GraphBuilder("ct")
    x = b.add_input("x", TensorType((1, 2, 3), "float32"))
    w = b.add_input("w", TensorType((2, 1, 2), "float32"))
    y = b.emit1(Op.CONV_TRANSPOSE, [x, w], ConvTransposeAttrs((1,), (0,), (0,), (0,), (1,), 2))
    graph = PASS.run(b.build([y]))
    assert Op.SLICE in ops(graph) and Op.TRANSPOSE in ops(graph)  # the flip and the swap, at run time
    wv = np.array([[[1, 2]], [[3, 4]]], np.float32)
    np.testing.assert_array_equal(interpret(graph, {"x": np.ones((1, 2, 3), np.float32), "w": wv})[0],
                                  [[[1, 3, 3, 2], [3, 7, 7, 4]]])


def test_crop_past_all_data_leaves_the_bias():
    # i = 1, k = 1, s = 3, pads_begin = 1, output_padding = 2: the full output is [5x] at position 0,
    # the output window is positions 1..2, beyond the data: only the bias remains
    b = GraphBuilder("ct")
    x = b.add_input("x", TensorType((1, 1, 1), "float64"))
    attrs = ConvTransposeAttrs((3,), (1,), (0,), (2,), (1,))
    y = b.emit1(Op.CONV_TRANSPOSE, [x, b.constant(np.array([[[5.0]]]), "w"), b.constant(np.array([7.0]), "b")],
                attrs)
    graph = PASS.run(b.build([y]))
    verify(graph, rewritten=True)
    assert Op.CONV_TRANSPOSE not in ops(graph)
    np.testing.assert_array_equal(interpret(graph, {"x": np.array([[[3.0]]])})[0], [[[7.0, 7.0]]])

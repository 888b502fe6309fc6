"""single_position: a conv over a 1x1 input becomes a 1x1 conv with a channel per output position."""
import numpy as np
import onnx
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

import convc
from convc.analysis import node_flops
from convc.ir import ConvAttrs, GraphBuilder, Op, TensorType, verify
from convc.compiler import lower_to_ir
from convc.passes.single_position import PASS, tap_of
from oracles import onnxruntime_outputs, relative_l2
from strategies import assert_equivalent


@st.composite
def single_position_convs(draw):
    """A conv of an input whose spatial sizes are all 1: 1-3 axes, any kernel, stride, dilation,
    padding (often larger than the kernel), groups and bias."""
    ndim = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 2]))
    c, m = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    strides = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    dilations = tuple(draw(st.integers(1, 2)) for _ in range(ndim))
    pads_begin = tuple(draw(st.integers(0, 4)) for _ in range(ndim))
    pads_end = tuple(max(0, d * (k - 1) - pb + draw(st.integers(-1, 2)))
                     for k, d, pb in zip(kernel, dilations, pads_begin))
    if any(1 + pb + pe - d * (k - 1) < 1 for k, d, pb, pe in zip(kernel, dilations, pads_begin, pads_end)):
        pads_end = tuple(d * (k - 1) for k, d in zip(kernel, dilations))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    b = GraphBuilder("single")
    x = b.add_input("x", TensorType((draw(st.integers(1, 2)), c, *(1,) * ndim), "float64"))
    inputs = [x, b.constant(rng.standard_normal((m, c // groups, *kernel)), "w")]
    if draw(st.booleans()):
        inputs.append(b.constant(rng.standard_normal(m), "b"))
    y = b.emit1(Op.CONV, inputs, ConvAttrs(strides, pads_begin, pads_end, dilations, groups))
    return b.build([y], ["y"])


@settings(max_examples=150, deadline=None)
@given(single_position_convs(), st.integers(0, 2**16))
def test_same_outputs_and_only_real_taps_multiplied(graph, seed):
    after = PASS.run(graph)
    verify(after)
    assert_equivalent(graph, after, seed, rtol=1e-10, atol=1e-10)
    (before_conv,) = [n for n in graph.nodes if n.op is Op.CONV]
    taps = int(np.prod(before_conv.inputs[1].shape[2:]))
    if taps > 1:
        assert [n.op for n in after.nodes] == [Op.CONV, Op.RESHAPE]
        (conv,) = [n for n in after.nodes if n.op is Op.CONV]
        assert all(k == 1 for k in conv.inputs[1].shape[2:])
        assert node_flops(after.nodes[0]) * taps == node_flops(before_conv)


def test_tap_of_matches_the_conv_definition():
    """Output o reads input position o*s + k*d - pb; only 0 is real."""
    for o, s, d, pb, k in np.ndindex(5, 3, 3, 6, 5):
        s, d = s + 1, d + 1
        real = [t for t in range(k) if o * s + t * d - pb == 0]
        assert tap_of(o, s, d, pb, k) == (real[0] if real else None)


def test_inputs_with_more_than_one_position_are_left_alone():
    rng = np.random.default_rng(0)
    b = GraphBuilder("two")
    x = b.add_input("x", TensorType((1, 2, 1, 2), "float32"))
    y = b.emit1(Op.CONV, [x, b.constant(rng.standard_normal((3, 2, 3, 3)).astype(np.float32), "w")],
                ConvAttrs((1, 1), (2, 2), (2, 2), (1, 1), 1))
    graph = b.build([y], ["y"])
    assert [n.op for n in PASS.run(graph).nodes] == [Op.CONV]


def test_latent_deconv_with_batchnorm_and_relu_against_onnxruntime():
    """DCGAN's first layer (4x4 transposed conv of a 1x1 latent, BN, ReLU) through the whole
    compiler: one 1x1 conv with 16 channels per filter, the same result as onnxruntime."""
    rng = np.random.default_rng(1)
    c, m = 20, 32
    w = rng.standard_normal((c, m, 4, 4)).astype(np.float32)
    bn = [rng.standard_normal(m).astype(np.float32) for _ in range(3)] + [rng.random(m).astype(np.float32) + 0.5]
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["t"], kernel_shape=[4, 4]),
             helper.make_node("BatchNormalization", ["t", "s", "b", "mean", "var"], ["n"]),
             helper.make_node("Relu", ["n"], ["y"])]
    inits = [onnx.numpy_helper.from_array(a, name) for a, name in zip([w, *bn], ["w", "s", "b", "mean", "var"])]
    graph = helper.make_graph(nodes, "latent", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT,
                                                                               [2, c, 1, 1])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, m, 4, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    ir = lower_to_ir(model)
    convs = [n for n in ir.nodes if n.op is Op.CONV]
    assert len(convs) == 1 and convs[0].inputs[1].shape == (m * 16, c, 1, 1)
    x = rng.standard_normal((2, c, 1, 1)).astype(np.float32)
    (got,) = convc.compile(model).run({"x": x})
    (want,) = onnxruntime_outputs(model, {"x": x})
    assert relative_l2(got, want) < 1e-5

"""subpixel: strided transposed convs as s^n stride-1 phase convs and a pixel shuffle.

Oracles: the IR's scatter-definition reference for conv_transpose (and the
zero-insertion form, an independent rewrite), the adjoint identity
<conv(x), y> = <x, conv_transpose(y)> with the conv reference, hand-worked 1-D
phases, and MAC counts from ``convc.analysis.node_flops``.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convc.analysis import node_flops
from convc.ir import ConvTransposeAttrs, GraphBuilder, Op, TensorType, interpret, verify
from convc.ir.ops.normalization import BatchNormAttrs
from convc.passes import PIPELINE, conv_transpose_to_conv, run_pipeline, subpixel
from strategies import (ConvCase, adjoint_case, assert_equivalent, build_conv_graph, conv_cases,
                        conv_transpose_cases)


def ops(graph):
    return [n.op for n in graph.nodes]


def convs(graph):
    return [n for n in graph.nodes if n.op is Op.CONV]


def conv_macs(graph):
    return sum(node_flops(n) // 2 for n in convs(graph))


def subpixel_form(graph):
    """The pipeline's order: sub-pixel where it pays, zero insertion for the rest."""
    return conv_transpose_to_conv.PASS.run(subpixel.PASS.run(graph))


@st.composite
def wide_stride_cases(draw):
    """1-D/2-D transposed convs with strides up to 5 (often beyond the kernel, so some
    phases get no tap) and dilations up to 3 (gcd(d, s) > 1 included)."""
    n = draw(st.integers(1, 2))
    g = draw(st.integers(1, 2))
    c, mg = g * draw(st.integers(1, 2)), draw(st.integers(1, 2))
    axes = []
    for _ in range(n):
        k, s, d, i = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
        op = draw(st.integers(0, max(s, d) - 1))
        full = s * (i - 1) + d * (k - 1) + 1 + op
        pb = draw(st.integers(-2, full - 1))
        pe = draw(st.integers(-2, full - pb - 1))
        axes.append((k, s, d, i, op, pb, pe))
    ks, ss, ds, xs, out_pad, pbs, pes = map(tuple, zip(*axes))
    attrs = ConvTransposeAttrs(ss, pbs, pes, out_pad, ds, g)
    return ConvCase(attrs, (draw(st.integers(1, 2)), c, *xs), (c, mg, *ks), draw(st.booleans()))


def check_three_forms(case, seed, const_weight):
    before = build_conv_graph(case, seed, dtype="float64", const_weight=const_weight)
    zero_inserted = conv_transpose_to_conv.PASS.run(before)
    after = subpixel_form(before)
    verify(after, rewritten=True)
    assert Op.CONV_TRANSPOSE not in ops(after)
    assert_equivalent(before, zero_inserted, seed, rtol=1e-10, atol=1e-10)
    assert_equivalent(before, after, seed, rtol=1e-10, atol=1e-10)
    rewritten = [n.op for n in after.nodes if n.origin.endswith("subpixel")]
    if rewritten:  # no zeros inserted, and less work than zero insertion
        assert Op.PAD not in rewritten and conv_macs(after) < conv_macs(zero_inserted)
    return bool(rewritten)


@settings(max_examples=100, deadline=None)
@given(conv_transpose_cases(), st.integers(0, 2**16), st.booleans())
def test_same_outputs_as_scatter_definition_and_zero_insertion(case, seed, const_weight):
    check_three_forms(case, seed, const_weight)


@settings(max_examples=100, deadline=None)
@given(wide_stride_cases(), st.integers(0, 2**16), st.booleans())
def test_same_outputs_with_strides_beyond_the_kernel(case, seed, const_weight):
    check_three_forms(case, seed, const_weight)


@settings(max_examples=100, deadline=None)
@given(conv_cases(), st.integers(0, 2**16))
def test_adjoint_of_conv(case, seed):
    """<conv(x), y> = <x, subpixel_form(y)> with the same weight, pads, strides, dilations, groups."""
    x, w, y, cx, ct = adjoint_case(case, seed)
    b = GraphBuilder("ct")
    yin = b.add_input("y", TensorType(y.shape, "float64"))
    graph = subpixel_form(b.build([b.emit1(Op.CONV_TRANSPOSE, [yin, b.constant(w, "w")], ct)]))
    assert Op.CONV_TRANSPOSE not in ops(graph)
    (cty,) = interpret(graph, {"y": y})
    assert cty.shape == x.shape
    np.testing.assert_allclose(np.vdot(cx, y), np.vdot(x, cty), rtol=1e-9, atol=1e-9)


def layer(x_shape, w_shape, attrs, bias=False, seed=0):
    graph = build_conv_graph(ConvCase(attrs, x_shape, w_shape, bias), seed, dtype="float64")
    return graph, subpixel.PASS.run(graph), conv_transpose_to_conv.PASS.run(graph)


def test_k4_s2_has_no_zero_insertion_and_a_quarter_of_the_macs():
    attrs = ConvTransposeAttrs((2, 2), (1, 1), (1, 1), (0, 0), (1, 1))
    before, after, zero_inserted = layer((1, 8, 5, 5), (8, 4, 4, 4), attrs, bias=True)
    verify(after, rewritten=True)
    assert Op.CONV_TRANSPOSE not in ops(after) and Op.PAD not in ops(after)
    (x,) = after.inputs
    assert all(n.op is Op.CONV for n in after.nodes if x in n.inputs)  # every conv reads the input as it is
    assert conv_macs(zero_inserted) == 1 * 4 * 10 * 10 * 8 * 16
    assert conv_macs(after) * 4 == conv_macs(zero_inserted) == subpixel.macs(zero_inserted)
    assert all(c.inputs[1].shape[2:] == (2, 2) and c.attrs.strides == (1, 1) for c in convs(after))
    assert all(c.origin == "test:conv_transpose 'layer' | subpixel" for c in after.nodes)
    assert_equivalent(before, after, 0, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("pads,out_pad", [((2, 2), (0, 0)), ((1, 1), (1, 1))])
def test_aligned_phases_are_one_conv_with_s2_times_the_channels(pads, out_pad):
    # pads 2: every phase reads x[q-1], x[q]; pads 1 with output_padding 1: the phases line up
    # once the shuffle starts one row early, at no extra rows
    attrs = ConvTransposeAttrs((2, 2), pads, pads, out_pad, (1, 1), 2)
    before, after, zero_inserted = layer((1, 4, 5, 5), (4, 3, 4, 4), attrs, bias=True)
    (conv,) = convs(after)
    assert conv.output.shape[1] == 4 * 6 and conv.attrs.groups == 2
    assert Op.CONCAT not in ops(after) and Op.TRANSPOSE in ops(after)
    rows = [(o + 1) // 2 for o in after.outputs[0].shape[2:]]
    assert conv.output.shape[2:] == tuple(rows)
    assert conv_macs(after) == 1 * (4 * 6) * rows[0] * rows[1] * (4 // 2) * (2 * 2)  # N, S*M, Q^2, C/g, taps
    assert conv_macs(after) * 3 < conv_macs(zero_inserted)
    assert_equivalent(before, after, 0, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("x_shape,w_shape,attrs,ratio", [
    ((2, 3, 5), (3, 2, 8), ConvTransposeAttrs((4,), (2,), (2,), (0,), (1,)), 4),  # 1-D k8 s4
    ((1, 3, 4), (3, 2, 3), ConvTransposeAttrs((2,), (1,), (1,), (1,), (1,)), 2),  # 1-D k3 s2 op1
    ((1, 3, 4, 4), (3, 2, 3, 3), ConvTransposeAttrs((2, 2), (1, 1), (1, 1), (1, 1), (1, 1)), 4),
    ((1, 2, 3, 3, 3), (2, 2, 2, 2, 2), ConvTransposeAttrs((2, 2, 2), (0,) * 3, (0,) * 3, (0,) * 3, (1,) * 3), 8),
    ((1, 2, 4, 3), (2, 2, 3, 2), ConvTransposeAttrs((2, 1), (0, 0), (0, 0), (1, 0), (1, 1)), 2),  # axis 2 unsplit
])
def test_macs_drop_by_the_stride_product(x_shape, w_shape, attrs, ratio):
    before, after, zero_inserted = layer(x_shape, w_shape, attrs)
    assert Op.CONV_TRANSPOSE not in ops(after)
    assert conv_macs(after) * ratio == conv_macs(zero_inserted)
    assert_equivalent(before, after, 0, rtol=1e-10, atol=1e-10)


def test_hand_worked_phases_of_k3_s2_with_output_padding():
    # y[2i + t] += x[i] * w[t], w = [1, 2, 3]: even outputs y[2q] = 3 x[q-1] + 1 x[q] (taps 2, 0,
    # flipped), odd outputs y[2q+1] = 2 x[q] (tap 1); output_padding adds y[7] = 0
    attrs = ConvTransposeAttrs((2,), (0,), (0,), (1,), (1,))
    b = GraphBuilder("ct")
    x = b.add_input("x", TensorType((1, 1, 3), "float64"))
    y = b.emit1(Op.CONV_TRANSPOSE, [x, b.constant(np.array([[[1.0, 2.0, 3.0]]]), "w")], attrs, name="up")
    after = subpixel.PASS.run(b.build([y]))
    even, odd = convs(after)
    assert [after.constants[c.inputs[1]].ravel().tolist() for c in (even, odd)] == [[3, 1], [2]]
    assert even.attrs.pads_begin == (1,) and odd.attrs.pads_begin == (0,) and odd.attrs.pads_end == (1,)
    got = interpret(after, {"x": np.array([[[1.0, 10.0, 100.0]]])})[0]
    np.testing.assert_array_equal(got, [[[1, 2, 13, 20, 130, 200, 300, 0]]])


def test_phase_without_taps_is_the_bias():
    # k = 1, s = 3: only phase 0 has a tap; phases 1 and 2 are the bias
    attrs = ConvTransposeAttrs((3,), (0,), (0,), (2,), (1,))
    b = GraphBuilder("ct")
    x = b.add_input("x", TensorType((1, 1, 2), "float64"))
    y = b.emit1(Op.CONV_TRANSPOSE, [x, b.constant(np.array([[[5.0]]]), "w"), b.constant(np.array([7.0]), "b")],
                attrs)
    after = subpixel.PASS.run(b.build([y]))
    assert len(convs(after)) == 1 and Op.CONV_TRANSPOSE not in ops(after)
    np.testing.assert_array_equal(interpret(after, {"x": np.array([[[1.0, 2.0]]])})[0],
                                  [[[12, 7, 7, 17, 7, 7]]])


@pytest.mark.parametrize("x_shape,w_shape,attrs", [
    ((1, 2, 4, 4), (2, 3, 3, 3), ConvTransposeAttrs((1, 1), (1, 1), (1, 1), (0, 0), (1, 1))),  # stride 1
    ((1, 2, 1), (2, 3, 2), ConvTransposeAttrs((2,), (1,), (0,), (0,), (1,))),  # one output: nothing saved
])
def test_unprofitable_layers_are_left_for_zero_insertion(x_shape, w_shape, attrs):
    before, after, _ = layer(x_shape, w_shape, attrs)
    assert ops(after) == [Op.CONV_TRANSPOSE]
    assert not subpixel.plan(attrs, x_shape, w_shape).profitable


def test_runtime_weights_become_slices():
    attrs = ConvTransposeAttrs((2,), (1,), (1,), (0,), (1,))
    case = ConvCase(attrs, (1, 2, 4), (2, 2, 4), True)
    before = build_conv_graph(case, 0, dtype="float64", const_weight=False)
    after = subpixel.PASS.run(before)
    assert Op.CONV_TRANSPOSE not in ops(after) and Op.SLICE in ops(after)
    assert_equivalent(before, after, 3, rtol=1e-10, atol=1e-10)


def dcgan_like(seed=0):
    """latent (2, 6, 1, 1) -> k4 s1 -> BN, relu -> k3 s2 p1 op1 -> BN, relu -> k4 s2 p1 -> BN, relu
    -> k5 s2 p2 op1 -> tanh: a 1 -> 4 -> 8 -> 16 -> 32 generator."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("dcgan")
    x = b.add_input("z", TensorType((2, 6, 1, 1), "float32"))
    layers = [(8, 4, 1, 0, 0), (6, 3, 2, 1, 1), (4, 4, 2, 1, 0), (3, 5, 2, 2, 1)]
    for i, (m, k, s, p, op) in enumerate(layers):
        w = b.constant((rng.standard_normal((x.shape[1], m, k, k)) / k).astype(np.float32), "w")
        attrs = ConvTransposeAttrs((s, s), (p, p), (p, p), (op, op), (1, 1))
        x = b.emit1(Op.CONV_TRANSPOSE, [x, w], attrs, name=f"up{i}", origin=f"onnx:ConvTranspose 'up{i}'")
        if i == len(layers) - 1:
            x = b.emit1(Op.TANH, [x])
        else:
            params = [rng.standard_normal(m), rng.standard_normal(m), rng.standard_normal(m), rng.uniform(0.5, 2, m)]
            x = b.emit1(Op.BATCH_NORM, [x, *(b.constant(p.astype(np.float32), "bn") for p in params)],
                        BatchNormAttrs(1e-5))
            x = b.emit1(Op.RELU, [x])
    return b.build([x], ["image"])


def test_pipeline_on_a_dcgan_like_generator():
    graph = dcgan_like()
    after = run_pipeline(graph)
    assert after.outputs[0].shape == (2, 3, 32, 32)
    assert {n.op for n in after.nodes}.isdisjoint({Op.CONV_TRANSPOSE, Op.BATCH_NORM, Op.PAD, Op.MUL, Op.ADD})
    forms = {n.origin.split(" | ")[0]: n.origin.split(" | ")[1] for n in convs(after)}
    assert forms == {"onnx:ConvTranspose 'up0'": "conv_transpose_to_conv", "onnx:ConvTranspose 'up1'": "subpixel",
                     "onnx:ConvTranspose 'up2'": "subpixel", "onnx:ConvTranspose 'up3'": "subpixel"}
    assert_equivalent(graph, after, 0, rtol=1e-4, atol=1e-4)
    zero_only = graph
    for step in PIPELINE:
        zero_only = zero_only if step is subpixel.PASS else step.run(zero_only)
    assert subpixel.macs(after) * 3 < subpixel.macs(zero_only)


@settings(max_examples=60, deadline=None)
@given(conv_transpose_cases(ndim=st.integers(1, 2)), st.integers(0, 2**16), st.booleans())
def test_batch_norm_after_the_deconv_folds_into_the_phases(case, seed, also_output):
    rng = np.random.default_rng(seed)
    before = build_conv_graph(case, seed, dtype="float64")
    b = GraphBuilder.like(before)
    b.nodes = list(before.nodes)
    (y,) = before.outputs
    m = y.shape[1]
    params = [rng.standard_normal(m), rng.standard_normal(m), rng.standard_normal(m), rng.uniform(0.5, 2, m)]
    bn = b.emit1(Op.BATCH_NORM, [y, *(b.constant(p, "bn") for p in params)], BatchNormAttrs(1e-5))
    graph = b.build([bn, y] if also_output else [bn])  # a second reader keeps the BN apart
    after = subpixel_form(graph)
    fired = any(n.origin.endswith("subpixel") for n in after.nodes)
    assert (Op.BATCH_NORM in ops(after)) == (also_output or not fired)
    assert_equivalent(graph, after, seed, rtol=1e-9, atol=1e-9)

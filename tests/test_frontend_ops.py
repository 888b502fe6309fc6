"""Pool, Resize and Gemm attribute sweeps: convc's import + reference interpreter against an oracle.

onnxruntime is the oracle, except AveragePool with ceil_mode before opset 19, where
onnxruntime lets the last window start in the end padding; there the test uses
onnx.reference.ReferenceEvaluator (the spec's behaviour).
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from onnx_oracles import assert_close, node_model, run_convc, run_ort, run_reference


@st.composite
def pool_problems(draw):
    ndim = draw(st.integers(1, 3))
    kernel = [draw(st.integers(1, 3)) for _ in range(ndim)]
    strides = [draw(st.integers(1, 3)) for _ in range(ndim)]
    dilations = [draw(st.integers(1, 2)) for _ in range(ndim)]
    pads = [draw(st.integers(0, (k - 1) * d // 2)) for k, d in zip(kernel * 2, dilations * 2)]
    spatial = [draw(st.integers(d * (k - 1) + 1, d * (k - 1) + 5)) for k, d in zip(kernel, dilations)]
    return ndim, kernel, strides, dilations, pads, spatial, draw(st.booleans()), draw(st.booleans())


@settings(max_examples=40, deadline=None)
@given(pool_problems(), st.sampled_from(["MaxPool", "AveragePool"]))
def test_pool_matches_oracle(problem, op):
    ndim, kernel, strides, dilations, pads, spatial, ceil_mode, count_include_pad = problem
    x = np.random.default_rng(0).standard_normal((1, 2, *spatial)).astype(np.float32)
    attrs = dict(kernel_shape=kernel, strides=strides, pads=pads, dilations=dilations, ceil_mode=int(ceil_mode))
    if op == "AveragePool":
        attrs["count_include_pad"] = int(count_include_pad)
    model = node_model(op, {"x": x}, attrs=attrs, opset=19)
    assert_close(run_convc(model, {"x": x}), run_ort(model, {"x": x}))


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_pool_auto_pad(op, auto_pad):
    x = np.random.default_rng(1).standard_normal((1, 2, 7, 6)).astype(np.float32)
    model = node_model(op, {"x": x}, attrs=dict(kernel_shape=[3, 2], strides=[2, 2], auto_pad=auto_pad))
    assert_close(run_convc(model, {"x": x}), run_ort(model, {"x": x}))


@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_average_pool_ceil_mode_before_opset_19(count_include_pad):
    x = np.random.default_rng(2).standard_normal((1, 1, 6, 6)).astype(np.float32)
    model = node_model("AveragePool", {"x": x}, opset=17, attrs=dict(
        kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=count_include_pad))
    assert_close(run_convc(model, {"x": x}), run_reference(model, {"x": x}))


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("spatial", [(5,), (4, 3), (3, 2, 2)])
def test_global_pool(op, spatial):
    x = np.random.default_rng(3).standard_normal((2, 3, *spatial)).astype(np.float32)
    model = node_model(op, {"x": x})
    assert_close(run_convc(model, {"x": x}), run_ort(model, {"x": x}))


RESIZE_MODES = [
    ("nearest", "asymmetric", "floor"), ("nearest", "half_pixel", "round_prefer_floor"),
    ("nearest", "align_corners", "round_prefer_ceil"), ("nearest", "tf_half_pixel_for_nn", None),
    ("linear", "half_pixel", None), ("linear", "align_corners", None), ("linear", "asymmetric", None),
    ("linear", "pytorch_half_pixel", None), ("cubic", "half_pixel", None), ("cubic", "align_corners", None),
]


@pytest.mark.parametrize("mode, coordinate_mode, nearest_mode", RESIZE_MODES)
@pytest.mark.parametrize("resize_by", ["scales_up", "scales_down", "sizes"])
def test_resize_matches_onnxruntime(mode, coordinate_mode, nearest_mode, resize_by):
    x = np.random.default_rng(4).standard_normal((1, 2, 5, 4)).astype(np.float32)
    attrs = dict(mode=mode, coordinate_transformation_mode=coordinate_mode)
    if nearest_mode:
        attrs["nearest_mode"] = nearest_mode
    constants = {"roi": np.zeros(0, np.float32)}
    if resize_by == "sizes":
        constants["sizes"] = np.array([1, 2, 8, 3], np.int64)
        order = ["x", "roi", "", "sizes"]
    else:
        scale = [2.0, 1.5] if resize_by == "scales_up" else [0.6, 0.5]
        constants["scales"] = np.array([1.0, 1.0, *scale], np.float32)
        order = ["x", "roi", "scales"]
    model = node_model("Resize", {"x": x}, constants, attrs, opset=13, input_order=order)
    if coordinate_mode == "tf_half_pixel_for_nn":  # an opset-11 mode the IR does not implement
        import convc
        with pytest.raises(convc.UnsupportedAttributeError, match="tf_half_pixel_for_nn"):
            run_convc(model, {"x": x})
        return
    assert_close(run_convc(model, {"x": x}), run_ort(model, {"x": x}))


@pytest.mark.parametrize("policy", ["stretch", "not_larger", "not_smaller"])
@pytest.mark.parametrize("axes", [[2, 3], [3, 2], [3]])
def test_resize_axes_and_aspect_policy(policy, axes):
    x = np.random.default_rng(5).standard_normal((1, 1, 4, 6)).astype(np.float32)
    sizes = np.array([7, 5][:len(axes)], np.int64)
    model = node_model("Resize", {"x": x}, {"sizes": sizes}, dict(
        mode="linear", axes=axes, keep_aspect_ratio_policy=policy), opset=18, input_order=["x", "", "", "sizes"])
    assert_close(run_convc(model, {"x": x}), run_ort(model, {"x": x}))


def test_resize_negative_axes_equal_positive_ones():
    """onnxruntime's kernel ignores keep_aspect_ratio_policy with negative axes, so the oracle
    here is the identity axes=[-1, -2] == axes=[3, 2]."""
    x = np.random.default_rng(5).standard_normal((1, 1, 4, 6)).astype(np.float32)
    sizes = {"sizes": np.array([7, 5], np.int64)}

    def run(axes):
        model = node_model("Resize", {"x": x}, sizes, dict(mode="linear", axes=axes, keep_aspect_ratio_policy="not_larger"),
                           opset=18, input_order=["x", "", "", "sizes"])
        return run_convc(model, {"x": x})
    assert_close(run([-1, -2]), run([3, 2]), tol=0)


@pytest.mark.parametrize("trans_a, trans_b, alpha, beta, bias_shape",
                         [(ta, tb, al, be, c) for (ta, tb), al, be, c in itertools.product(
                             itertools.product([0, 1], repeat=2), [1.0, 0.5], [1.0, -2.0],
                             [None, (), (1,), (4,), (3, 1), (3, 4)])])
@pytest.mark.parametrize("b_is_constant", [True, False])
def test_gemm_matches_onnxruntime(trans_a, trans_b, alpha, beta, bias_shape, b_is_constant):
    rng = np.random.default_rng(6)
    a = rng.standard_normal((5, 3) if trans_a else (3, 5)).astype(np.float32)
    b = rng.standard_normal((4, 5) if trans_b else (5, 4)).astype(np.float32)
    inputs, constants = {"a": a}, {}
    (constants if b_is_constant else inputs)["b"] = b
    order = ["a", "b"]
    if bias_shape is not None:
        constants["c"] = rng.standard_normal(bias_shape).astype(np.float32)
        order.append("c")
    model = node_model("Gemm", inputs, constants, dict(transA=trans_a, transB=trans_b, alpha=alpha, beta=beta),
                       input_order=order)
    assert_close(run_convc(model, inputs), run_ort(model, inputs))

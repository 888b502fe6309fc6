"""Attributes that moved to inputs across opsets: each form imported and checked against onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest

from onnx_oracles import assert_close, node_model, run_convc, run_ort

X = np.random.default_rng(0).standard_normal((2, 1, 3, 4)).astype(np.float32)


def _i64(*values):
    return np.array(values, np.int64)


# (op, opset, constants, attrs, input order) per form
FORMS = [
    ("Squeeze", 11, {}, dict(axes=[1]), None),
    ("Squeeze", 13, {"axes": _i64(-3)}, {}, None),
    ("Squeeze", 13, {}, {}, None),
    ("Unsqueeze", 11, {}, dict(axes=[0, -1]), None),
    ("Unsqueeze", 13, {"axes": _i64(4, 0)}, {}, None),
    ("ReduceSum", 11, {}, dict(axes=[1, 3], keepdims=0), None),
    ("ReduceSum", 13, {"axes": _i64(-1)}, {}, None),
    ("ReduceSum", 13, {"axes": _i64()}, dict(noop_with_empty_axes=1), None),
    ("ReduceMean", 17, {}, dict(axes=[2, 3]), None),
    ("ReduceMean", 18, {"axes": _i64(2, 3)}, dict(keepdims=0), None),
    ("ReduceMax", 18, {}, {}, None),
    ("Clip", 11, {"lo": np.float32(-0.5), "hi": np.float32(0.5)}, {}, ["x", "lo", "hi"]),
    ("Clip", 13, {"hi": np.float32(0.1)}, {}, ["x", "", "hi"]),
    ("Pad", 11, {"pads": _i64(0, 0, 1, -1, 0, 0, 2, 1)}, dict(mode="constant"), None),
    ("Pad", 18, {"pads": _i64(2, -1, 1, 2), "v": np.float32(3), "axes": _i64(-1, 2)}, {}, ["x", "pads", "v", "axes"]),
    ("Pad", 19, {"pads": _i64(0, 0, 1, 2, 0, 0, 1, 2)}, dict(mode="wrap"), None),
    ("Pad", 13, {"pads": _i64(0, 0, 2, 1, 0, 0, 1, 2)}, dict(mode="reflect"), None),
    ("Slice", 11, {"s": _i64(-1, 0), "e": _i64(-4, 100), "a": _i64(3, 2), "st": _i64(-1, 2)}, {}, None),
    ("Softmax", 11, {}, dict(axis=2), None),
    ("Softmax", 13, {}, dict(axis=2), None),
    ("Flatten", 13, {}, dict(axis=-2), None),
    ("DepthToSpace", 13, {}, dict(blocksize=1, mode="CRD"), None),
    ("Transpose", 13, {}, {}, None),
]


@pytest.mark.parametrize("op, opset, constants, attrs, order", FORMS,
                         ids=[f"{f[0]}-{f[1]}-{i}" for i, f in enumerate(FORMS)])
def test_form_matches_onnxruntime(op, opset, constants, attrs, order):
    model = node_model(op, {"x": X}, constants, attrs, opset=opset, input_order=order)
    assert_close(run_convc(model, {"x": X}), run_ort(model, {"x": X}), tol=1e-6)


@pytest.mark.parametrize("opset, split_input, attrs, outputs", [
    (11, None, dict(axis=3, split=[1, 3]), 2), (13, _i64(2, 2), dict(axis=-1), 2),
    (13, None, dict(axis=0), 2), (18, None, dict(axis=3, num_outputs=3), 3)])
def test_split_forms(opset, split_input, attrs, outputs):
    from onnx import TensorProto, helper, numpy_helper
    names = [f"y{i}" for i in range(outputs)]
    inits = [] if split_input is None else [numpy_helper.from_array(split_input, "split")]
    node = helper.make_node("Split", ["x"] + (["split"] if inits else []), names, name="s", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, X.shape)],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names], inits)
    model = helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", opset)])
    assert_close(run_convc(model, {"x": X}), run_ort(model, {"x": X}), tol=0)

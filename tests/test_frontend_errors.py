"""The importer's error paths and its naming contract (inputs, outputs, origins)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import convc
from convc.frontends.onnx import import_model
from onnx_oracles import node_model


def _model(nodes, inputs, outputs, initializers=(), opset=17, extra_opsets=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", opset), *extra_opsets])


def _f32(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_every_unsupported_op_is_reported_in_one_error():
    nodes = [helper.make_node("LRN", ["x"], ["a"], name="lrn1", size=3),
             helper.make_node("Relu", ["a"], ["b"], name="ok"),
             helper.make_node("LRN", ["b"], ["c"], name="lrn2", size=3),
             helper.make_node("Einsum", ["c"], ["d"], name="e1", equation="i->i"),
             helper.make_node("Frobnicate", ["d"], ["y"], name="f1", domain="com.example")]
    model = _model(nodes, [_f32("x", [1, 3, 4, 4])], [_f32("y", None)],
                   extra_opsets=[helper.make_opsetid("com.example", 1)])
    with pytest.raises(convc.UnsupportedOperatorError) as info:
        import_model(model)
    assert info.value.ops == {"LRN (opset 17)": ["lrn1", "lrn2"], "Einsum (opset 17)": ["e1"],
                              "com.example.Frobnicate": ["f1"]}
    assert "lrn2" in str(info.value) and "Frobnicate" in str(info.value)


def test_an_attribute_no_converter_reads_is_rejected():
    x = np.zeros((1, 1, 4, 4), np.float32)
    model = node_model("Conv", {"x": x}, {"w": np.ones((1, 1, 3, 3), np.float32)}, dict(fancy_mode=1))
    with pytest.raises(convc.UnsupportedAttributeError, match=r"Conv 'n0'.*fancy_mode"):
        import_model(model)


@pytest.mark.parametrize("op, attrs, match", [
    ("MaxPool", dict(kernel_shape=[2, 2], storage_order=1), "storage_order"),
    ("Resize", dict(antialias=1, mode="linear"), "antialias"),
    ("Cast", dict(to=TensorProto.BFLOAT16), "to="),
])
def test_unsupported_attribute_values(op, attrs, match):
    x = np.zeros((1, 1, 4, 4), np.float32)
    constants = {"scales": np.array([1, 1, 2, 2], np.float32)} if op == "Resize" else {}
    order = ["x", "", "scales"] if op == "Resize" else None
    model = node_model(op, {"x": x}, constants, attrs, opset=19, input_order=order)
    with pytest.raises(convc.UnsupportedAttributeError, match=match):
        import_model(model)


@pytest.mark.parametrize("outputs, match", [(["y", "mask"], "mask"), (["y"], "training_mode")])
def test_dropout_training_forms_are_rejected(outputs, match):
    inits = [numpy_helper.from_array(np.array(True), "t"), numpy_helper.from_array(np.array(0.5, np.float32), "r")]
    inputs = ["x", "r", "t"] if outputs == ["y"] else ["x"]
    node = helper.make_node("Dropout", inputs, outputs, name="d")
    model = _model([node], [_f32("x", [2, 2])], [_f32(o, None) for o in outputs], inits)
    with pytest.raises(convc.ConvcError, match=match):
        import_model(model)


def test_malformed_file(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07this is not a protobuf\xff\xff")
    with pytest.raises(convc.ModelError, match="broken.onnx"):
        import_model(path)
    with pytest.raises(convc.ModelError, match="does not exist"):
        import_model(tmp_path / "missing.onnx")


def test_symbolic_dims_need_input_shapes():
    node = helper.make_node("Relu", ["data"], ["y"], name="r")
    model = _model([node], [_f32("data", ["batch", 3, 8, 8])], [_f32("y", None)])
    with pytest.raises(convc.ShapeError, match=r"'data'.*batch.*input_shapes.*--input-shape data=1,3,224,224"):
        import_model(model)
    graph = import_model(model, input_shapes={"data": [2, 3, 8, 8]})
    assert graph.inputs[0].shape == (2, 3, 8, 8)
    with pytest.raises(convc.ShapeError, match="rank"):
        import_model(model, input_shapes={"data": [2, 3]})
    with pytest.raises(convc.ShapeError, match="fixes dim 1 = 3"):
        import_model(model, input_shapes={"data": [2, 4, 8, 8]})
    with pytest.raises(convc.ShapeError, match="not inputs"):
        import_model(model, input_shapes={"nope": [1]})


def test_opset_below_11_is_rejected():
    node = helper.make_node("Relu", ["x"], ["y"])
    with pytest.raises(convc.ModelError, match="opset 10.*11"):
        import_model(_model([node], [_f32("x", [2])], [_f32("y", None)], opset=10))


def test_dynamic_shape_input_is_named():
    node = helper.make_node("Reshape", ["x", "shape"], ["y"], name="r1")
    model = _model([node], [_f32("x", [2, 3]), helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
                   [_f32("y", None)])
    with pytest.raises(convc.ShapeError, match="dynamic shapes are not supported: input 'shape' of Reshape 'r1' "
                                               "is not a constant"):
        import_model(model)


def test_names_origins_and_initializer_inputs():
    """Initializers listed as inputs are constants; outputs keep the ONNX names and order;
    shape arithmetic (Shape -> Gather -> Concat -> Reshape) folds away at import."""
    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    idx = numpy_helper.from_array(np.array([0], np.int64), "i0")
    minus1 = numpy_helper.from_array(np.array([-1], np.int64), "m1")
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "i0"], ["n"], name="batch"),
             helper.make_node("Concat", ["n", "m1"], ["target"], name="cat", axis=0),
             helper.make_node("Reshape", ["x", "target"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "w"], ["logits"], name="fc", transB=1),
             helper.make_node("Relu", ["logits"], ["act"], name="relu")]
    model = _model(nodes, [_f32("x", [2, 3, 1]), _f32("w", [4, 3])], [_f32("act", None), _f32("logits", None)], [w, idx, minus1])
    graph = import_model(model)
    assert [v.name for v in graph.inputs] == ["x"]
    assert graph.output_names == ("act", "logits")
    assert [n.op for n in graph.nodes] == [convc.ir.Op.RESHAPE, convc.ir.Op.MATMUL, convc.ir.Op.RELU]
    assert [n.origin for n in graph.nodes] == ["onnx:Reshape 'flatten'", "onnx:Gemm 'fc'", "onnx:Relu 'relu'"]
    x = np.random.default_rng(0).standard_normal((2, 3, 1)).astype(np.float32)
    act, logits = convc.ir.interpret(graph, {"x": x})
    np.testing.assert_allclose(logits, x.reshape(2, 3) @ np.ones((3, 4)), rtol=1e-6)
    np.testing.assert_allclose(act, np.maximum(logits, 0))


def test_int_inputs_are_accepted():
    model = node_model("Add", {"a": np.zeros(3, np.int64), "b": np.zeros(3, np.int64)})
    graph = import_model(model)
    (y,) = convc.ir.interpret(graph, {"a": np.array([1, 2, 3]), "b": np.array([4, 5, 6])})
    np.testing.assert_array_equal(y, [5, 7, 9])

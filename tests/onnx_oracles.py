"""Single-node ONNX models and the independent oracles the frontend tests compare with:
onnxruntime and onnx.reference.ReferenceEvaluator."""
from __future__ import annotations

from typing import Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from convc.frontends.onnx import import_model
from convc.ir import interpret, verify


def node_model(op_type: str, inputs: Mapping[str, np.ndarray], constants: Mapping[str, np.ndarray] = {},
               attrs: Mapping[str, object] = {}, opset: int = 17, input_order: list[str] | None = None,
               ) -> onnx.ModelProto:
    """A model of one ``op_type`` node: ``inputs`` become graph inputs, ``constants`` initializers.

    The node reads ``input_order`` (names, "" for an omitted optional input), by default
    the graph inputs followed by the constants.
    """
    order = input_order if input_order is not None else [*inputs, *constants]
    node = helper.make_node(op_type, order, ["y"], name="n0", **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
         for n, a in inputs.items()],
        [helper.make_tensor_value_info("y", helper.np_dtype_to_tensor_dtype(np.dtype(np.float32)), None)],
        [numpy_helper.from_array(np.asarray(a), n) for n, a in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def run_ort(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, dict(feeds))


def run_reference(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator
    return ReferenceEvaluator(model).run(None, dict(feeds))


def run_convc(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    graph = import_model(model)
    verify(graph)
    return interpret(graph, feeds)


def assert_close(actual: list[np.ndarray], expected: list[np.ndarray], tol: float = 1e-4) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.shape == e.shape, f"shape {a.shape} != oracle {e.shape}"
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol)

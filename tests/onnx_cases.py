"""The ONNX backend node test cases that convc's frontend must handle, and what to expect of each.

``node_cases()`` yields every case of ``onnx.backend.test.case.node.collect_testcases()``
whose graph uses only ops of ``REQUIRED_OPS`` (function-expanded ``_expanded`` cases
included when they do), classified as expected to run or to raise a ``ConvcError``.

convc needs static shapes, so an input that sets a shape (Reshape's shape, Slice's starts,
Resize's sizes, ...) must be a constant. A case that feeds such a slot from a graph input
is expected to fail, and comes a second time as ``<name>[frozen]``, with those graph inputs
turned into initializers holding the case's data, which is expected to run. Every other
exclusion is a row of ``EXCLUDED`` with its reason, or one of the rules in ``_expectation``
(opset below 11, an element type the IR lacks).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

REQUIRED_OPS = frozenset("""
    Conv ConvTranspose MaxPool AveragePool GlobalAveragePool GlobalMaxPool Gemm MatMul
    BatchNormalization Softmax Relu LeakyRelu Elu Sigmoid Tanh HardSigmoid HardSwish Clip PRelu
    Add Sub Mul Div Pow Max Min Exp Log Sqrt Neg Abs Reciprocal Floor Ceil Not And Or Equal Less
    Greater Where Cast Concat Transpose Reshape Flatten Squeeze Unsqueeze Expand Gather Slice Split
    Pad DepthToSpace SpaceToDepth Identity Dropout ReduceMean ReduceMax ReduceMin ReduceSum
    ReduceProd Constant Shape ConstantOfShape Range Resize Upsample
""".split())

# The element types the IR has (convc/ir/types.py); anything else is rejected at import.
IR_ELEM_TYPES = frozenset({TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BOOL,
                           TensorProto.INT8, TensorProto.INT16, TensorProto.INT32, TensorProto.INT64,
                           TensorProto.UINT8, TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64})

_REDUCE_AXES_INPUT_SINCE = {"ReduceSum": 13, "ReduceMean": 18, "ReduceMax": 18, "ReduceMin": 18,
                            "ReduceProd": 18}


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _constant_slots(node: onnx.NodeProto, opset: int) -> tuple[int, ...]:
    """Input positions of ``node`` that determine shapes (or, for Clip, the op itself)."""
    op = node.op_type
    if op in _REDUCE_AXES_INPUT_SINCE:
        return (1,) if opset >= _REDUCE_AXES_INPUT_SINCE[op] else ()
    if op == "Resize":
        crop = _attr(node, "coordinate_transformation_mode") == "tf_crop_and_resize"
        return (1, 2, 3) if crop else (2, 3)
    return {"Reshape": (1,), "Slice": (1, 2, 3, 4), "Squeeze": (1,), "Unsqueeze": (1,), "Split": (1,),
            "Pad": (1, 2, 3), "Upsample": (1,), "Expand": (1,), "Gather": (1,), "Clip": (1, 2),
            "ConstantOfShape": (0,), "Range": (0, 1, 2), "Dropout": (2,)}.get(op, ())


def _opset(model: onnx.ModelProto) -> int:
    return max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def dynamic_inputs(model: onnx.ModelProto) -> set[str]:
    """Graph inputs whose values flow (through any op but Shape) into a shape-setting slot."""
    graph, opset = model.graph, _opset(model)
    initializers = {t.name for t in graph.initializer}
    deps: dict[str, frozenset[str]] = {i.name: frozenset({i.name}) for i in graph.input
                                       if i.name not in initializers}
    found: set[str] = set()
    for node in graph.node:
        for slot in _constant_slots(node, opset):
            if slot < len(node.input):
                found |= deps.get(node.input[slot], frozenset())
        if node.op_type != "Shape":
            inherited = frozenset().union(*(deps.get(n, frozenset()) for n in node.input))
            deps.update({out: inherited for out in node.output})
    return found


@dataclass(frozen=True)
class Expectation:
    """``kind`` is "run" (outputs must match) or "error" (a ConvcError must be raised).

    ``tolerance``, when set, replaces the default float tolerance of the comparison.
    """

    kind: str
    reason: str = ""
    tolerance: float | None = None


RUN = Expectation("run")

# Cases expected to raise, by name pattern, each with the reason.
EXCLUDED: dict[str, str] = {
    r"test_(training_dropout.*|dropout_default_mask.*)": "Dropout in training mode or with its mask output",
    r"test_batchnorm_.*_training_mode": "BatchNormalization training_mode=1",
    r"test_maxpool_with_argmax_.*": "MaxPool's optional Indices output",
    r"test_resize_.*_antialias": "Resize antialias=1",
    r"test_identity_(sequence|opt)": "sequence / optional inputs: convc has tensors only",
    r"test_maxpool_2d_uint8": "pooling of a non-float (uint8) tensor",
    r"test_reduce_(max|min)_empty_set(_bool)?(\[frozen\])?": "max/min over an empty axis (the IR rejects it)",
}


# Cases whose expected outputs are less precise than float32, with the tolerance they need.
LOOSE: dict[str, tuple[float, str]] = {
    "test_averagepool_2d_ceil_last_window_starts_on_pad": (1e-3, "expected values are given to 4 decimals"),
}


def _unsupported_elem_types(model: onnx.ModelProto) -> set[int]:
    graph = model.graph
    types = {vi.type.tensor_type.elem_type for vi in list(graph.input) + list(graph.output)
             if vi.type.WhichOneof("value") == "tensor_type"}
    types |= {t.data_type for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Cast":
            types.add(_attr(node, "to"))
        value = _attr(node, "value") if node.op_type in ("Constant", "ConstantOfShape") else None
        if isinstance(value, TensorProto):
            types.add(value.data_type)
    return types - IR_ELEM_TYPES


def _expectation(name: str, model: onnx.ModelProto) -> Expectation:
    if _opset(model) < 11:
        return Expectation("error", f"opset {_opset(model)} is below 11")
    for pattern, reason in EXCLUDED.items():
        if re.fullmatch(pattern, name):
            return Expectation("error", reason)
    bad = _unsupported_elem_types(model)
    if bad:
        names = sorted(TensorProto.DataType.Name(t) for t in bad)
        return Expectation("error", f"element type(s) {names} the IR lacks")
    if any(vi.type.WhichOneof("value") != "tensor_type" for vi in model.graph.input):
        return Expectation("error", "a non-tensor graph input")
    dynamic = dynamic_inputs(model)
    if dynamic:
        return Expectation("error", f"dynamic shapes: graph input(s) {sorted(dynamic)} set a shape")
    if name in LOOSE:
        return Expectation("run", LOOSE[name][1], tolerance=LOOSE[name][0])
    return RUN


def freeze(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of ``model`` in which the graph inputs named in ``values`` are initializers."""
    frozen = onnx.ModelProto()
    frozen.CopyFrom(model)
    kept = [i for i in frozen.graph.input if i.name not in values]
    del frozen.graph.input[:]
    frozen.graph.input.extend(kept)
    frozen.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), name) for name, v in values.items())
    return frozen


@dataclass(frozen=True)
class NodeCase:
    name: str
    model: onnx.ModelProto
    inputs: dict[str, np.ndarray]
    outputs: list[np.ndarray]
    expectation: Expectation


def _array(data) -> np.ndarray:
    """Some cases store their data as TensorProtos (e.g. to keep NaN payloads)."""
    return numpy_helper.to_array(data) if isinstance(data, TensorProto) else np.asarray(data)


def _uses_required_ops_only(model: onnx.ModelProto) -> bool:
    return all(node.op_type in REQUIRED_OPS and node.domain in ("", "ai.onnx") for node in model.graph.node)


@functools.cache
def _collect() -> tuple[NodeCase, ...]:
    import warnings

    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        testcases = collect_testcases()
    cases = []
    for case in testcases:
        if case.model is None or not _uses_required_ops_only(case.model):
            continue
        graph = case.model.graph
        initializers = {t.name for t in graph.initializer}
        input_names = [i.name for i in graph.input if i.name not in initializers]
        for k, (inputs, outputs) in enumerate(case.data_sets or ()):
            name = case.name + (f"_{k}" if k else "")
            feed = dict(zip(input_names, map(_array, inputs)))
            outputs = [_array(o) for o in outputs]
            expectation = _expectation(name, case.model)
            cases.append(NodeCase(name, case.model, feed, list(outputs), expectation))
            dynamic = dynamic_inputs(case.model) if expectation.reason.startswith("dynamic") else set()
            if dynamic:
                model = freeze(case.model, {n: feed[n] for n in dynamic})
                rest = {n: v for n, v in feed.items() if n not in dynamic}
                cases.append(NodeCase(f"{name}[frozen]", model, rest, list(outputs),
                                      _expectation(name, model)))
    return tuple(cases)


def node_cases(select: Callable[[NodeCase], bool] = lambda c: True) -> Iterator[
        tuple[str, onnx.ModelProto, dict[str, np.ndarray], list[np.ndarray], Expectation]]:
    """Yield ``(case_name, model, inputs, expected_outputs, expectation)`` for every selected case."""
    for case in _collect():
        if select(case):
            yield case.name, case.model, case.inputs, case.outputs, case.expectation

"""The benchmark networks in the form a GPU machine gets them.

A GPU run takes at most 64 MiB of files, and a convc library embeds its weights
(ResNet-50: about 100 MB in float32), which random weights make incompressible. So the
networks travel with *transfer weights*: the zoo's weights rounded to a power-of-two grid
(each value a small integer times 2^e, e from the tensor's spread), BatchNorm scales and
variances to powers of two and four with epsilon 0, so that even the folded, packed and
float16-converted weights in the libraries have short mantissas and compress several
times over. Speed does not depend on the values; the outputs are checked against
onnxruntime on the same rounded model.

For PyTorch the network travels as a description (nodes, attributes; JSON) and its
weights (npz), which ``bench/cuda.py`` runs with ``torch.nn.functional``: no ONNX package
or converter is needed there. onnxruntime's output on a deterministic input is computed
here and travels as the reference.
"""
from __future__ import annotations

import copy
import json

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bench.cuda import input_array

LEVELS = 32  # grid steps each side of zero: 65 values per tensor
STEP_PER_STD = 8  # grid step = 2^round(log2(std / 8))


def _power_of(base: float, a: np.ndarray) -> np.ndarray:
    return (np.sign(a) * base ** np.round(np.log(np.abs(a)) / np.log(base))).astype(a.dtype)


def _grid(a: np.ndarray) -> np.ndarray:
    std = float(a.std())
    if std == 0.0:
        return a
    step = np.float32(2.0 ** round(np.log2(std / STEP_PER_STD)))
    return (np.clip(np.round(a / step), -LEVELS, LEVELS) * step).astype(a.dtype)


def transfer_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with transfer weights (see the module docstring)."""
    model = copy.deepcopy(model)
    scales, variances = set(), set()
    for node in model.graph.node:
        if node.op_type == "BatchNormalization":
            scales.add(node.input[1])
            variances.add(node.input[4])
            for attr in node.attribute:
                if attr.name == "epsilon":
                    attr.f = 0.0
    for init in model.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype != np.float32 or a.size <= 1:
            continue
        if init.name in scales:
            a = _power_of(2.0, a)
        elif init.name in variances:
            a = _power_of(4.0, a)
        else:
            a = _grid(a)
        init.CopyFrom(numpy_helper.from_array(a, init.name))
    return model


def _attribute(attr: onnx.AttributeProto):
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, (list, tuple)):
        return [v.decode() if isinstance(v, bytes) else v for v in value]
    return value


def describe(model: onnx.ModelProto) -> tuple[str, dict[str, np.ndarray]]:
    """(JSON description, initializers) of ``model``: what ``bench.cuda.TorchNet`` runs."""
    def shape(value):
        return [d.dim_value for d in value.type.tensor_type.shape.dim]
    weights = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    graph = {
        "inputs": [{"name": v.name, "shape": shape(v)} for v in model.graph.input if v.name not in weights],
        "outputs": [v.name for v in model.graph.output],
        "nodes": [{"op": n.op_type, "inputs": list(n.input), "outputs": list(n.output),
                   "attrs": {a.name: _attribute(a) for a in n.attribute}} for n in model.graph.node],
    }
    return json.dumps(graph), weights


def reference(model: onnx.ModelProto) -> np.ndarray:
    """onnxruntime's (CPU) output of ``model`` on ``bench.cuda.input_array`` of its input shape."""
    import onnxruntime as ort
    (value,) = [v for v in model.graph.input if v.name not in {i.name for i in model.graph.initializer}]
    shape = [d.dim_value for d in value.type.tensor_type.shape.dim]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {value.name: input_array(shape)})
    return out

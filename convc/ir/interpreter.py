"""The NumPy reference interpreter: the oracle every pass and backend is checked against."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from convc.errors import InputError
from convc.ir.graph import Graph, Value
from convc.ir.op import opdef


def interpret(graph: Graph, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Run ``graph`` on named NumPy inputs; return its outputs in order."""
    env: dict[Value, np.ndarray] = dict(graph.constants)
    for value in graph.inputs:
        if value.name not in inputs:
            raise InputError(f"missing input {value.name!r}")
        array = np.asarray(inputs[value.name])
        if array.shape != value.shape or array.dtype != np.dtype(value.dtype):
            raise InputError(f"input {value.name!r}: expected {value.type}, got "
                             f"{array.dtype.name}{list(array.shape)}")
        env[value] = array
    for node in graph.nodes:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # IEEE results (inf, nan) are intended
            results = opdef(node.op).reference(node.attrs, [env[v] for v in node.inputs])
        for value, result in zip(node.outputs, results):
            env[value] = np.asarray(result, dtype=value.dtype).reshape(value.shape)
    return [env[v] for v in graph.outputs]

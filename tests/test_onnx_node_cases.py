"""The ONNX backend node tests (see onnx_cases.py) through the importer.

Each case runs on every backend of ``BACKENDS``; a backend is a function from
(model, inputs) to the list of outputs. Cases expected to fail must raise a ConvcError.
"""
from __future__ import annotations

import re
from typing import Callable

import numpy as np
import onnx
import pytest

import convc
from convc.frontends.onnx import import_model
from convc.ir import interpret, verify
from onnx_cases import EXCLUDED, LOOSE, REQUIRED_OPS, node_cases


def _interpreter(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    graph = import_model(model)
    verify(graph)
    return interpret(graph, inputs)


def _compiled(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    return convc.compile(model).run(inputs)


BACKENDS: dict[str, Callable[[onnx.ModelProto, dict[str, np.ndarray]], list[np.ndarray]]] = {
    "interpreter": _interpreter,
    "compiled": _compiled,
}
FLOAT_KINDS = "f"


def _float_io(model: onnx.ModelProto, inputs, expected) -> bool:
    """Compiled models take and return float tensors only; others must be refused."""
    return all(np.asarray(a).dtype.kind in FLOAT_KINDS for a in [*inputs.values(), *expected])

# relative and absolute tolerance per float dtype (the expected values are computed in float64 or float32)
TOLERANCE = {np.dtype(np.float16): 2e-3, np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-7}


def assert_outputs_match(actual: list[np.ndarray], expected: list[np.ndarray],
                         tolerance: float | None = None) -> None:
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected)):
        e = np.asarray(e)
        assert a.shape == e.shape, f"output {i}: shape {a.shape} != {e.shape}"
        assert a.dtype == e.dtype, f"output {i}: dtype {a.dtype} != {e.dtype}"
        if e.dtype in TOLERANCE:
            tol = tolerance or TOLERANCE[e.dtype]
            np.testing.assert_allclose(a, e, rtol=tol, atol=tol * max(1.0, float(np.abs(e).max(initial=0))),
                                       err_msg=f"output {i}")
        else:
            np.testing.assert_array_equal(a, e, err_msg=f"output {i}")


def run_case(backend: str, model: onnx.ModelProto, inputs, expected, expectation) -> None:
    run = BACKENDS[backend]
    if expectation.kind == "error" or (backend == "compiled" and not _float_io(model, inputs, expected)):
        with pytest.raises(convc.ConvcError):
            run(model, inputs)
    else:
        assert_outputs_match(run(model, inputs), expected, expectation.tolerance)


CASES = list(node_cases())


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("name, model, inputs, expected, expectation", CASES, ids=[c[0] for c in CASES])
def test_node_case(backend, name, model, inputs, expected, expectation):
    run_case(backend, model, inputs, expected, expectation)


def test_every_exclusion_row_is_used():
    unused = [p for p in EXCLUDED if not any(re.fullmatch(p, c[0]) for c in CASES)]
    unused += [name for name in LOOSE if name not in {c[0] for c in CASES}]
    assert not unused, f"stale rows in onnx_cases.EXCLUDED / LOOSE: {unused}"


def test_cases_cover_every_required_op():
    covered = {node.op_type for c in CASES if c[4].kind == "run" for node in c[1].graph.node}
    only_old_opsets = {"And", "Not", "Upsample"}  # their backend cases use opsets below 11
    assert REQUIRED_OPS - covered <= only_old_opsets, sorted(REQUIRED_OPS - covered - only_old_opsets)

"""Shared by the lowering tests: build a graph for the host CPU and compare with the interpreter."""
from __future__ import annotations

import numpy as np

from convc.ir import Graph, interpret
from convc.lower import build
from convc.runtime import CompiledModel
from convc.target import resolve_target

TARGET = resolve_target("llvm")


def sample(shape, dtype: str, rng: np.random.Generator) -> np.ndarray:
    """Random data of ``dtype``: normal floats, small integers, fair booleans."""
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if np.issubdtype(np.dtype(dtype), np.integer):
        return rng.integers(-5, 6, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def check(graph: Graph, inputs: dict | None = None, *, rtol: float = 1e-5, atol: float = 1e-5,
          seed: int = 0) -> CompiledModel:
    """Build ``graph``, run it and assert it matches ``convc.ir.interpret``; return the model."""
    rng = np.random.default_rng(seed)
    inputs = inputs or {v.name: sample(v.shape, v.dtype, rng) for v in graph.inputs}
    model = build(graph, TARGET)
    got = model.run(inputs)
    want = interpret(graph, inputs)
    assert len(got) == len(want)
    for name, g, w in zip(graph.output_names, got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, (name, g.shape, g.dtype, w.shape, w.dtype)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"output {name!r}")
    return model

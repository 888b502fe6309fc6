"""Property tests: random convs and random small graphs, built and run, equal the interpreter."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from convc.ir import Op
from lower_check import check
from strategies import LAYERS, build_conv_graph, conv_cases, random_graphs

# Lowering takes graphs as the passes leave them: no transposed convs (batch norm still lowers).
LOWERABLE_LAYERS = tuple(layer for layer in LAYERS if "transpose" not in layer.__name__)


@settings(max_examples=25, deadline=None)
@given(case=conv_cases(), seed=st.integers(0, 2**16), const_weight=st.booleans())
def test_random_convs(case, seed, const_weight):
    check(build_conv_graph(case, seed, const_weight=const_weight), seed=seed, rtol=1e-4, atol=1e-4)


@settings(max_examples=15, deadline=None)
@given(graph=random_graphs(layers=LOWERABLE_LAYERS), seed=st.integers(0, 2**16))
def test_random_graphs(graph, seed):
    assert all(node.op is not Op.CONV_TRANSPOSE for node in graph.nodes)
    check(graph, seed=seed, rtol=1e-4, atol=1e-4)

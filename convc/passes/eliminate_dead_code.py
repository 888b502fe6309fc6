"""Drop nodes none of whose outputs reach a graph output, and constants nobody reads."""
from __future__ import annotations

from convc.ir import Graph
from convc.passes.base import Pass


def eliminate_dead_code(graph: Graph) -> Graph:
    """``graph`` without dead nodes and unused constants; inputs are kept (they are the signature)."""
    live = set(graph.outputs)
    kept = []
    for node in reversed(graph.nodes):
        if any(v in live for v in node.outputs):
            kept.append(node)
            live.update(node.inputs)
    if len(kept) == len(graph.nodes) and all(v in live for v in graph.constants):
        return graph
    constants = {v: a for v, a in graph.constants.items() if v in live}
    return Graph(graph.inputs, tuple(reversed(kept)), graph.outputs, graph.output_names,
                 constants, graph.name)


PASS = Pass("eliminate_dead_code", eliminate_dead_code,
            "nodes whose results nobody reads cost time and memory")

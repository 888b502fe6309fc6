"""Text form of a graph, one node a line, for --dump-ir and debugging."""
from __future__ import annotations

import dataclasses
import enum

from convc.ir.graph import Graph


def _format_attr(value) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, tuple):
        return "(" + ",".join(_format_attr(v) for v in value) + ")"
    return repr(value)


def format_attrs(attrs) -> str:
    if not dataclasses.is_dataclass(attrs):
        return ""
    fields = [f"{f.name}={_format_attr(getattr(attrs, f.name))}" for f in dataclasses.fields(attrs)]
    return "{" + ", ".join(fields) + "}" if fields else ""


def format_graph(graph: Graph) -> str:
    lines = [f"graph {graph.name}("
             + ", ".join(f"%{v.name}: {v.type}" for v in graph.inputs) + ") {"]
    for value, array in graph.constants.items():
        lines.append(f"  const %{value.name}: {value.type}")
    for node in graph.nodes:
        outs = ", ".join(f"%{v.name}" for v in node.outputs)
        ins = ", ".join(f"%{v.name}" for v in node.inputs)
        types = ", ".join(str(v.type) for v in node.outputs)
        attrs = format_attrs(node.attrs)
        lines.append(f"  {outs} = {node.op}({ins}) {attrs} : {types}".replace("  :", " :"))
    outs = ", ".join(f"{name}=%{v.name}" for name, v in zip(graph.output_names, graph.outputs))
    lines.append(f"  return {outs}")
    lines.append("}")
    return "\n".join(lines)

"""Values, nodes and graphs.

A ``Graph`` owns its ``Node``s in topological order. A ``Node`` reads and writes
``Value``s; a ``Value`` has a unique name and a static ``TensorType``. Constants
(weights, folded shape arithmetic) are NumPy arrays attached to the graph, keyed by
their ``Value``. Graphs are immutable: passes build new ones with ``GraphBuilder``.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from convc.ir.op import NoAttrs, Op, opdef
from convc.ir.types import TensorType


@dataclass(frozen=True, eq=False)
class Value:
    """An SSA value: produced once (by a node, or as a graph input or constant)."""

    name: str
    type: TensorType

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    def __repr__(self) -> str:
        return f"%{self.name}:{self.type}"


@dataclass(frozen=True, eq=False)
class Node:
    """One operator application.

    ``name`` is unique in the graph; ``origin`` records where the node came from (the
    ONNX node it was imported from, and the passes that rewrote it), for ``inspect``.
    """

    op: Op
    inputs: tuple[Value, ...]
    outputs: tuple[Value, ...]
    attrs: Any = NoAttrs()
    name: str = ""
    origin: str = ""

    @property
    def output(self) -> Value:
        assert len(self.outputs) == 1, f"{self.name} has {len(self.outputs)} outputs"
        return self.outputs[0]


@dataclass(frozen=True, eq=False)
class Graph:
    """A model: inputs, nodes in topological order, constants, and named outputs.

    ``output_names`` are the names the user sees (the ONNX graph's), in order; they may
    differ from the names of the internal ``outputs`` values after rewrites.
    """

    inputs: tuple[Value, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[Value, ...]
    output_names: tuple[str, ...]
    constants: Mapping[Value, np.ndarray] = field(default_factory=dict)
    name: str = "model"

    def __post_init__(self):
        object.__setattr__(self, "constants", MappingProxyType(dict(self.constants)))

    def producers(self) -> dict[Value, Node]:
        return {out: node for node in self.nodes for out in node.outputs}

    def consumers(self) -> dict[Value, list[Node]]:
        users: dict[Value, list[Node]] = {}
        for node in self.nodes:
            for value in node.inputs:
                users.setdefault(value, []).append(node)
        return users

    def is_constant(self, value: Value) -> bool:
        return value in self.constants

    def __str__(self) -> str:
        from convc.ir.printer import format_graph
        return format_graph(self)


class GraphBuilder:
    """Builds a graph node by node, inferring output types as it goes.

    ``emit`` folds a node whose inputs are all constants into a new constant (using
    the op's reference implementation) unless ``fold=False``: shapes are static, so
    shape arithmetic disappears as soon as it is built.
    """

    def __init__(self, name: str = "model"):
        self.name = name
        self.inputs: list[Value] = []
        self.nodes: list[Node] = []
        self.constants: dict[Value, np.ndarray] = {}
        self._names: set[str] = set()
        self._counter = itertools.count()

    # -- names -----------------------------------------------------------------
    def fresh_name(self, hint: str) -> str:
        hint = hint or "v"
        name = hint
        while name in self._names:
            name = f"{hint}_{next(self._counter)}"
        self._names.add(name)
        return name

    # -- values ----------------------------------------------------------------
    def add_input(self, name: str, type_: TensorType) -> Value:
        value = Value(self.fresh_name(name), type_)
        if value.name != name:
            raise ValueError(f"duplicate graph input name {name!r}")
        self.inputs.append(value)
        return value

    def constant(self, array: np.ndarray, name: str = "const") -> Value:
        array = np.asarray(array)
        value = Value(self.fresh_name(name), TensorType.of(array))
        array = array.copy()
        array.setflags(write=False)
        self.constants[value] = array
        return value

    def is_constant(self, value: Value) -> bool:
        return value in self.constants

    def const_value(self, value: Value) -> np.ndarray | None:
        return self.constants.get(value)

    # -- nodes -----------------------------------------------------------------
    def emit(self, op: Op, inputs: Sequence[Value], attrs: Any = None, *,
             name: str = "", origin: str = "", fold: bool = True) -> tuple[Value, ...]:
        """Append ``op(inputs)``; return its outputs (constants when folded)."""
        rules = opdef(op)
        if attrs is None:
            attrs = rules.attrs_type()
        inputs = tuple(inputs)
        out_types = rules.infer(attrs, [v.type for v in inputs])
        base = name or str(op)
        if fold and inputs and all(v in self.constants for v in inputs):
            arrays = rules.reference(attrs, [self.constants[v] for v in inputs])
            return tuple(self.constant(np.asarray(a, dtype=t.dtype).reshape(t.shape), base)
                         for a, t in zip(arrays, out_types))
        node_name = self.fresh_name(base)
        if len(out_types) == 1:
            outputs = (Value(node_name, out_types[0]),)
            # the node's name doubles as its output value's name
        else:
            outputs = tuple(Value(self.fresh_name(f"{node_name}.{i}"), t)
                            for i, t in enumerate(out_types))
        self.nodes.append(Node(op, inputs, outputs, attrs, node_name, origin))
        return outputs

    def emit1(self, op: Op, inputs: Sequence[Value], attrs: Any = None, **kw) -> Value:
        """``emit`` for single-output ops."""
        (out,) = self.emit(op, inputs, attrs, **kw)
        return out

    def build(self, outputs: Sequence[Value], output_names: Sequence[str] | None = None) -> Graph:
        outputs = tuple(outputs)
        names = tuple(output_names) if output_names is not None else tuple(v.name for v in outputs)
        used = {v for n in self.nodes for v in n.inputs} | set(outputs)
        constants = {v: a for v, a in self.constants.items() if v in used}
        return Graph(tuple(self.inputs), tuple(self.nodes), outputs, names, constants, self.name)

    @staticmethod
    def like(graph: Graph) -> "GraphBuilder":
        """A builder holding ``graph``'s inputs and constants but none of its nodes."""
        b = GraphBuilder(graph.name)
        b.inputs = list(graph.inputs)
        b.constants = dict(graph.constants)
        b._names = {v.name for v in graph.inputs} | {v.name for v in graph.constants}
        b._names |= {v.name for n in graph.nodes for v in n.outputs}
        b._names |= {n.name for n in graph.nodes}
        return b


def iter_values(graph: Graph) -> Iterable[Value]:
    yield from graph.inputs
    yield from graph.constants
    for node in graph.nodes:
        yield from node.outputs

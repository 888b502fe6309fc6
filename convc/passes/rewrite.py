"""The rewriting driver: named rules applied to a graph in one walk, in topological order.

A ``Rule`` says which ops it looks at and gives a function ``apply(ctx, node)`` that
either returns the values replacing ``node``'s outputs (built with ``ctx.emit``) or
``None`` when it does not apply. The driver copies every node no rule rewrites,
substituting inputs as earlier rewrites replaced them, then drops what became dead.

Rules see the graph being built: ``ctx.inputs(node)`` are the node's (substituted)
inputs, ``ctx.const`` / ``ctx.producer`` look at values of the new graph, and
``ctx.sole_user`` answers use-count questions about the source graph.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from convc.ir import Graph, GraphBuilder, Node, Op, Value
from convc.passes.base import Pass
from convc.passes.eliminate_dead_code import eliminate_dead_code

RuleFn = Callable[["Rewriter", Node], "Sequence[Value] | None"]


@dataclass(frozen=True)
class Rule:
    """A named rewrite of nodes whose op is in ``ops``; ``apply`` returns new outputs or None."""

    name: str
    ops: frozenset[Op]
    apply: RuleFn
    why: str


class Rewriter:
    """The state of one walk: source graph, the builder of the result, the value substitution."""

    def __init__(self, graph: Graph, pass_name: str):
        self.graph = graph
        self.pass_name = pass_name
        self.builder = GraphBuilder.like(graph)
        self.node: Node | None = None  # the node a rule is looking at
        self._subst: dict[Value, Value] = {}
        self._users = graph.consumers()
        self._source_values = set(graph.inputs) | set(graph.constants) | set(graph.producers())
        self._outputs = set(graph.outputs)
        self._producers: dict[Value, Node] = {}
        self._indexed = 0

    # -- looking at the graph being built ----------------------------------------
    def value(self, value: Value) -> Value:
        """What ``value`` of the source graph has become."""
        return self._subst.get(value, value)

    def inputs(self, node: Node) -> tuple[Value, ...]:
        return tuple(self.value(v) for v in node.inputs)

    def const(self, value: Value) -> np.ndarray | None:
        """The array of a constant of the new graph, or None."""
        return self.builder.const_value(value)

    def producer(self, value: Value) -> Node | None:
        """The node of the new graph that computes ``value`` (None for inputs and constants)."""
        for node in self.builder.nodes[self._indexed:]:
            self._producers.update((v, node) for v in node.outputs)
        self._indexed = len(self.builder.nodes)
        return self._producers.get(value)

    def sole_user(self, value: Value, node: Node) -> bool:
        """True when, in the source graph, ``node`` is the only reader of ``value``."""
        return (value in self._source_values and value not in self._outputs
                and self._users.get(value, []) == [node])

    # -- building ----------------------------------------------------------------
    def emit_all(self, op: Op, inputs: Sequence[Value], attrs: Any = None, *, fold: bool = True,
                 source: Node | None = None) -> tuple[Value, ...]:
        """Emit ``op`` on behalf of ``source`` (default: the node being rewritten).

        The new node is named after ``source`` and its origin is ``source``'s with this
        pass appended; constant inputs fold unless ``fold=False``.
        """
        src = source or self.node
        origin = f"{src.origin} | {self.pass_name}" if src.origin else self.pass_name
        return self.builder.emit(op, inputs, attrs, name=f"{src.name}_{op}", origin=origin, fold=fold)

    def emit(self, op: Op, inputs: Sequence[Value], attrs: Any = None, **kw) -> Value:
        """``emit_all`` for single-output ops."""
        (out,) = self.emit_all(op, inputs, attrs, **kw)
        return out

    def constant(self, array: np.ndarray, what: str) -> Value:
        return self.builder.constant(array, f"{self.node.name}_{what}")

    # -- the walk ----------------------------------------------------------------
    def _copy(self, node: Node) -> None:
        inputs = self.inputs(node)
        if inputs != node.inputs:
            node = dataclasses.replace(node, inputs=inputs)
        self.builder.nodes.append(node)

    def _replace(self, node: Node, new: Sequence[Value]) -> None:
        new = tuple(new)
        if len(new) != len(node.outputs) or any(a.type != b.type for a, b in zip(node.outputs, new)):
            raise AssertionError(f"{self.pass_name}: rewrite of {node.name!r} gives {new}, "
                                 f"expected the types of {node.outputs}")
        self._subst.update(zip(node.outputs, new))

    def run(self, rules: Iterable[Rule]) -> Graph:
        by_op: dict[Op, list[Rule]] = {}
        for rule in rules:
            for op in rule.ops:
                by_op.setdefault(op, []).append(rule)
        for node in self.graph.nodes:
            self.node = node
            for rule in by_op.get(node.op, ()):
                new = rule.apply(self, node)
                if new is not None:
                    self._replace(node, new)
                    break
            else:
                self._copy(node)
        self.node = None
        outputs = [self.value(v) for v in self.graph.outputs]
        return eliminate_dead_code(self.builder.build(outputs, self.graph.output_names))


def rewrite(graph: Graph, rules: Iterable[Rule], pass_name: str) -> Graph:
    """Apply ``rules`` to every node of ``graph`` once, in order; return the new graph."""
    return Rewriter(graph, pass_name).run(rules)


def rule_pass(name: str, why: str, rules: Sequence[Rule]) -> Pass:
    """A pipeline pass that is one ``rewrite`` walk with ``rules``."""
    rules = tuple(rules)
    return Pass(name, lambda graph: rewrite(graph, rules, name), why)

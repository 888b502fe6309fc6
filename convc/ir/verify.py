"""Whole-graph checks: SSA form, topological order, op rules, and the pipeline invariant."""
from __future__ import annotations

from convc.errors import ConvcError
from convc.ir.graph import Graph
from convc.ir.op import Op, opdef

# Ops that must be gone once the rewrite pipeline has run: the backend lowers only
# plain convolutions as heavy operators.
REWRITTEN_AWAY = (Op.CONV_TRANSPOSE, Op.BATCH_NORM)


class VerificationError(ConvcError):
    """The graph breaks an IR invariant (a bug in convc, or a hand-built bad graph)."""


def verify(graph: Graph, *, rewritten: bool = False) -> None:
    """Check ``graph``; with ``rewritten``, also the post-pipeline invariant.

    Raises ``VerificationError`` naming the node and the broken rule.
    """
    defined = set(graph.inputs) | set(graph.constants)
    names = [v.name for v in defined]
    for node in graph.nodes:
        where = f"node {node.name!r} ({node.op})"
        rules = opdef(node.op)
        lo, hi = rules.arity
        if not lo <= len(node.inputs) <= hi:
            raise VerificationError(f"{where}: takes {lo}..{hi} inputs, has {len(node.inputs)}")
        if not isinstance(node.attrs, rules.attrs_type):
            raise VerificationError(f"{where}: attrs {type(node.attrs).__name__}, "
                                    f"expected {rules.attrs_type.__name__}")
        for value in node.inputs:
            if value not in defined:
                raise VerificationError(f"{where}: input {value} is not defined before use")
        expected = rules.infer(node.attrs, [v.type for v in node.inputs])
        actual = [v.type for v in node.outputs]
        if expected != actual:
            raise VerificationError(f"{where}: outputs typed {actual}, the op infers {expected}")
        for value in node.outputs:
            if value in defined:
                raise VerificationError(f"{where}: output {value} is defined twice")
            defined.add(value)
            names.append(value.name)
        if rewritten:
            _check_rewritten(graph, node, where)
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise VerificationError(f"value names are not unique: {dup[:5]}")
    for value in graph.outputs:
        if value not in defined:
            raise VerificationError(f"graph output {value} is not defined")
    if len(graph.output_names) != len(graph.outputs):
        raise VerificationError("output_names and outputs differ in length")


def _check_rewritten(graph: Graph, node, where: str) -> None:
    if node.op in REWRITTEN_AWAY:
        raise VerificationError(f"{where}: must have been rewritten away by the pipeline")
    if node.op is Op.MATMUL and any(graph.is_constant(v) for v in node.inputs):
        raise VerificationError(f"{where}: a matmul with a constant operand must have become a conv")

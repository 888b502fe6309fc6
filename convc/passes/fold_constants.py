"""Evaluate every node whose inputs are all constants, with the op's reference implementation."""
from __future__ import annotations

from convc.ir import Node, Op, Value
from convc.passes.rewrite import Rewriter, Rule, rule_pass


def _fold(ctx: Rewriter, node: Node) -> tuple[Value, ...] | None:
    inputs = ctx.inputs(node)
    if not all(ctx.const(v) is not None for v in inputs):
        return None
    return ctx.emit_all(node.op, inputs, node.attrs)  # the builder folds all-constant nodes


RULES = (Rule("fold_constant_node", frozenset(Op), _fold,
              "shapes are static, so arithmetic on weights and shapes is done once at compile time"),)

PASS = rule_pass("fold_constants", "compute at compile time what does not depend on the inputs", RULES)

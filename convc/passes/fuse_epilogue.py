"""Fuse the elementwise work after a conv into the conv's output loop.

A conv whose output has a single reader absorbs that reader when it is:
- an add of a per-channel constant while the conv has no epilogue yet: it becomes (or
  adds to) the conv's bias;
- a unary activation (relu, leaky_relu, clip, sigmoid, tanh, hard_sigmoid, hard_swish,
  elu): a unary epilogue step;
- an activation after a sub-pixel interleave: moved onto each phase, then fused there;
- an add / mul with any operand that broadcasts to the conv's output (a residual
  tensor, a per-channel scale), or a sub with the conv on the left: a binary step that
  reads the operand as one more conv input.
The fused conv is emitted where the absorbed node stood, so every operand is already
computed there. Repeating the walk until nothing changes lets conv -> add -> relu fuse
completely.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from convc.ir import Graph, Node, Op, Value
from convc.ir.ops.conv import EpilogueStep, split_conv_inputs
from convc.passes.base import Pass
from convc.passes.rewrite import Rewriter, Rule, rewrite

UNARY_STEPS = frozenset({Op.RELU, Op.LEAKY_RELU, Op.CLIP, Op.SIGMOID, Op.TANH, Op.HARD_SIGMOID,
                         Op.HARD_SWISH, Op.ELU})
COMMUTATIVE_STEPS = frozenset({Op.ADD, Op.MUL})


def _fusible_conv(ctx: Rewriter, node: Node, position: int) -> Node | None:
    """The conv producing input ``position`` of ``node``, if ``node`` is its only reader."""
    value = ctx.inputs(node)[position]
    conv = ctx.producer(value)
    if conv is None or conv.op is not Op.CONV or not ctx.sole_user(node.inputs[position], node):
        return None
    if node.output.type != value.type:  # the step must not broadcast the conv's output
        return None
    return conv


def _with_epilogue(ctx: Rewriter, conv: Node, step: EpilogueStep, operands: tuple[Value, ...] = ()) -> Value:
    attrs = dataclasses.replace(conv.attrs, epilogue=conv.attrs.epilogue + (step,))
    return ctx.emit(Op.CONV, [*conv.inputs, *operands], attrs, source=conv)


def _per_channel(array: np.ndarray, conv: Node) -> np.ndarray | None:
    """``array`` as a (M,) vector if it broadcasts along the conv output's channel axis only."""
    out = conv.output.shape
    if array.ndim > len(out):
        return None
    full = (1,) * (len(out) - array.ndim) + array.shape
    if any(d != 1 for i, d in enumerate(full) if i != 1) or full[1] not in (1, out[1]):
        return None
    return np.broadcast_to(array.reshape(full[1]), (out[1],))


def bias_add(ctx: Rewriter, node: Node) -> tuple[Value] | None:
    for position in (0, 1):
        conv = _fusible_conv(ctx, node, position)
        constant = ctx.const(ctx.inputs(node)[1 - position])
        if conv is None or constant is None or conv.attrs.epilogue:
            continue
        vector = _per_channel(constant, conv)
        if vector is None:
            continue
        (data, weight, *bias), _ = split_conv_inputs(conv.attrs, conv.inputs)
        if bias:
            old = ctx.const(bias[0])
            if old is None:
                continue
            vector = vector + old
        new_bias = ctx.constant(vector.astype(conv.output.dtype), "bias")
        return (ctx.emit(Op.CONV, [data, weight, new_bias], conv.attrs, source=conv),)
    return None


def unary_step(ctx: Rewriter, node: Node) -> tuple[Value] | None:
    conv = _fusible_conv(ctx, node, 0)
    if conv is None:
        return None
    return (_with_epilogue(ctx, conv, EpilogueStep(node.op, node.attrs)),)


def binary_step(ctx: Rewriter, node: Node) -> tuple[Value] | None:
    positions = (1, 0) if node.op in COMMUTATIVE_STEPS else (0,)
    for position in positions:  # prefer the later operand: the conv computed last
        conv = _fusible_conv(ctx, node, position)
        if conv is not None:
            operand = ctx.inputs(node)[1 - position]
            return (_with_epilogue(ctx, conv, EpilogueStep(node.op), (operand,)),)
    return None


def unary_through_interleave(ctx: Rewriter, node: Node) -> tuple[Value] | None:
    """An activation after a sub-pixel interleave moves onto each phase (data movement commutes
    with elementwise ops), where the next walk fuses it into the phase convs."""
    value = ctx.inputs(node)[0]
    interleave = ctx.producer(value)
    if interleave is None or interleave.op is not Op.INTERLEAVE or not ctx.sole_user(node.inputs[0], node):
        return None
    phases = [ctx.emit(node.op, [phase], node.attrs) for phase in interleave.inputs]
    return (ctx.emit(Op.INTERLEAVE, phases, interleave.attrs, source=interleave),)


RULES = (
    Rule("add_into_bias", frozenset({Op.ADD}), bias_add,
         "a per-channel constant added to a conv is its bias"),
    Rule("activation_into_conv", UNARY_STEPS, unary_step,
         "an activation computed on the conv's register tile costs no memory pass"),
    Rule("activation_through_interleave", UNARY_STEPS, unary_through_interleave,
         "sub-pixel phases are convs: an activation after their interleave fuses into each of them"),
    Rule("binary_into_conv", frozenset({Op.ADD, Op.SUB, Op.MUL}), binary_step,
         "a residual add (or scale) read once while the conv's output is in registers"),
)


def _shape_of(graph: Graph) -> tuple:
    return tuple((n.op, n.attrs) for n in graph.nodes)


def fuse_epilogue(graph: Graph) -> Graph:
    """Fuse until nothing changes (a walk may leave work for the next, e.g. after an interleave)."""
    while True:
        fused = rewrite(graph, RULES, PASS_NAME)
        if _shape_of(fused) == _shape_of(graph):
            return fused
        graph = fused


PASS_NAME = "fuse_epilogue"
PASS = Pass(PASS_NAME, fuse_epilogue, "bias, activations and residual adds run inside the conv's output loop")

"""Nodes compiled as one kernel with a neighbour: a 1x1 expansion and the depthwise conv that
alone reads it (``FUSION``); a sub-pixel phase conv and the interleave that alone reads it
(``SHUFFLE``).

The graph keeps both convs (every pass, the reference interpreter and the tuner see two
layers). ``select_schedule`` marks a pair (both convs' ``algorithm`` becomes
``expand_depthwise``) when the target's backend has a pair kernel (``Backend.pair_kernel``:
the CPU's) that computes it, and the user asked for no kernel for
either layer, whatever the cost model or the tuning database picked for them one by one
(a layer timed alone has its input and output in cache; what the fusion saves is the trip
of the wide tensor through memory in the network); the lowering emits one kernel for each
marked pair. ``compile(disable_passes={FUSION})``
(``--disable-pass fuse_expand_depthwise``) keeps every pair apart.

A sub-pixel conv whose phases share taps and offsets is one conv with ``P*M`` channels read
by an ``interleave`` alone (``convc.passes.subpixel``); the backend's shuffle kernel
(``Backend.shuffle_kernel``, the CPU's ``subpixel_shuffle``) computes the conv and writes its
phases interleaved, so ``select_schedule`` marks such a conv ``subpixel_shuffle`` and the
lowering emits one kernel at the interleave. It reads and writes the plain layout, so it is
used where the conv's input and the interleave's output are plain (a model's input and
output, or between plain layers); ``--disable-pass fuse_subpixel_shuffle`` turns it off.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from convc.ir import Graph, Node, Op, Value
from convc.ir.ops.conv import Algorithm, constant_weights
from convc.layout import PLAIN, Layouts, conv_layouts
from convc.schedules.cpu.blocked import ConvProblem
from convc.schedules.cpu.blocked.expand_depthwise import FusedPair
from convc.schedules.cpu.blocked.shuffled import ShuffledConv

FUSION = "fuse_expand_depthwise"  # the names ``disable_passes`` turn the fusions off by
SHUFFLE = "fuse_subpixel_shuffle"
FUSIONS = frozenset({FUSION, SHUFFLE})


def enabled_fusions(disable_passes) -> frozenset[str]:
    """The fusions a compile with ``disable_passes`` makes."""
    return FUSIONS - set(disable_passes)


@dataclass(frozen=True)
class Fusion:
    """Two conv nodes computed by one kernel of the backend's pair kernel."""

    expand: Node
    depthwise: Node
    pair: FusedPair


def _pairs(graph: Graph, layouts: Layouts, block: int, algorithms: tuple[str, str] | None = None):
    """(expansion, depthwise, problems) for every conv reading, alone, a conv's output that
    is no graph output, both with constant weights (and the given ``algorithms``, if any)."""
    producers, consumers = graph.producers(), graph.consumers()
    outputs = set(graph.outputs)
    for node in graph.nodes:
        expand = producers.get(node.inputs[0]) if node.op is Op.CONV else None
        if (expand is None or expand.op is not Op.CONV or expand.output in outputs
                or len(consumers.get(expand.output, [])) != 1
                or algorithms not in (None, (expand.attrs.algorithm.value, node.attrs.algorithm.value))
                or not constant_weights(graph, expand) or not constant_weights(graph, node)):
            continue
        yield Fusion(expand, node, FusedPair(ConvProblem.from_node(expand, *conv_layouts(expand, layouts, block)),
                                             ConvProblem.from_node(node, *conv_layouts(node, layouts, block))))


def candidate_fusions(graph: Graph, layouts: Layouts, block: int, pair_kernel: Any) -> list[Fusion]:
    """The pairs ``pair_kernel`` (None: no fusion) computes."""
    if pair_kernel is None:
        return []
    return [f for f in _pairs(graph, layouts, block) if pair_kernel.decline(f.pair) is None]


def marked_fusions(graph: Graph, layouts: Layouts, block: int) -> dict[str, Fusion]:
    """The pairs ``select_schedule`` marked, keyed by the name of their depthwise node."""
    marked = (Algorithm.EXPAND_DEPTHWISE.value,) * 2
    return {f.depthwise.name: f for f in _pairs(graph, layouts, block, marked)}


@dataclass(frozen=True)
class Shuffle:
    """A phase conv and the interleave reading it, computed by the backend's shuffle kernel."""

    conv: Node
    interleave: Node
    shuffled: ShuffledConv


def _shuffles(graph: Graph, layouts: Layouts, marked: bool = False):
    """(conv, interleave, problem) for every interleave reading, alone, one conv's output that
    is no graph output, with constant weights, a plain input and a plain result, whose phase
    grid is the whole output (no crop); with ``marked``, only convs marked ``subpixel_shuffle``."""
    producers, consumers = graph.producers(), graph.consumers()
    outputs = set(graph.outputs)
    for node in graph.nodes:
        if node.op is not Op.INTERLEAVE or len(node.inputs) != 1:
            continue
        conv = producers.get(node.inputs[0])
        if (conv is None or conv.op is not Op.CONV or conv.output in outputs
                or len(consumers.get(conv.output, [])) != 1 or not constant_weights(graph, conv)
                or layouts.get(conv.inputs[0], PLAIN) != PLAIN or layouts[node.output] != PLAIN
                or (marked and conv.attrs.algorithm is not Algorithm.SUBPIXEL_SHUFFLE)):
            continue
        a, rows = node.attrs, conv.output.shape[2:]
        if any(a.starts) or tuple(a.out_size) != tuple(q * s for q, s in zip(rows, a.strides)):
            continue
        yield Shuffle(conv, node, ShuffledConv(ConvProblem.from_node(conv, PLAIN, PLAIN), tuple(a.strides)))


def candidate_shuffles(graph: Graph, layouts: Layouts, shuffle_kernel: Any) -> list[Shuffle]:
    """The phase convs and interleaves ``shuffle_kernel`` (None: no fusion) computes."""
    if shuffle_kernel is None:
        return []
    return [f for f in _shuffles(graph, layouts) if shuffle_kernel.decline(f.shuffled) is None]


def marked_shuffles(graph: Graph, layouts: Layouts) -> dict[str, Shuffle]:
    """The shuffles ``select_schedule`` marked, keyed by the name of their interleave node."""
    return {f.interleave.name: f for f in _shuffles(graph, layouts, marked=True)}


def unstored_values(graph: Graph) -> set[Value]:
    """The values the marked fusions compute inside their kernel and never write to memory: the
    output of a conv marked ``subpixel_shuffle`` (its interleave's kernel computes it), and that
    of an expansion marked ``expand_depthwise`` read by its marked depthwise conv."""
    fused = (Algorithm.EXPAND_DEPTHWISE, Algorithm.SUBPIXEL_SHUFFLE)
    marked = {n.output: n for n in graph.nodes if n.op is Op.CONV and n.attrs.algorithm in fused}
    unstored = set()
    for node in graph.nodes:
        if node.op is Op.INTERLEAVE and len(node.inputs) == 1:
            producer = marked.get(node.inputs[0])
            if producer is not None and producer.attrs.algorithm is Algorithm.SUBPIXEL_SHUFFLE:
                unstored.add(producer.output)
        elif node.op is Op.CONV and node.attrs.algorithm is Algorithm.EXPAND_DEPTHWISE:
            producer = marked.get(node.inputs[0])
            if producer is not None and producer.attrs.algorithm is Algorithm.EXPAND_DEPTHWISE:
                unstored.add(producer.output)
    return unstored


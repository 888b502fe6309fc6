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

Elsewhere, when the phase convs and their interleave share one blocked layout (the interleave
feeds the next conv, as in a U-Net decoder or a DCGAN generator), the phase convs keep their
own kernels, but each writes its rows straight into the interleaved output
(``convc.lower.strided_output``; every store is still one vector of channels), the first
allocating it and the others in place: no interleave kernel, the output written once.
``select_schedule`` marks such an interleave ``in_place``; ``--disable-pass
write_phases_in_place`` keeps the interleave kernel.
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
PHASE_WRITES = "write_phases_in_place"
FUSIONS = frozenset({FUSION, SHUFFLE, PHASE_WRITES})


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
    """The values the marked fusions never write to memory on their own: the output of a conv
    marked ``subpixel_shuffle`` (its interleave's kernel computes it), that of an expansion marked
    ``expand_depthwise`` read by its marked depthwise conv, and the phases of an interleave marked
    ``in_place`` (written straight into its output)."""
    fused = (Algorithm.EXPAND_DEPTHWISE, Algorithm.SUBPIXEL_SHUFFLE)
    marked = {n.output: n for n in graph.nodes if n.op is Op.CONV and n.attrs.algorithm in fused}
    unstored = set()
    for node in graph.nodes:
        if node.op is Op.INTERLEAVE and node.attrs.in_place:
            unstored.update(node.inputs)
        elif node.op is Op.INTERLEAVE and len(node.inputs) == 1:
            producer = marked.get(node.inputs[0])
            if producer is not None and producer.attrs.algorithm is Algorithm.SUBPIXEL_SHUFFLE:
                unstored.add(producer.output)
        elif node.op is Op.CONV and node.attrs.algorithm is Algorithm.EXPAND_DEPTHWISE:
            producer = marked.get(node.inputs[0])
            if producer is not None and producer.attrs.algorithm is Algorithm.EXPAND_DEPTHWISE:
                unstored.add(producer.output)
    return unstored


@dataclass(frozen=True)
class PhaseWrites:
    """The phase convs of an interleave (in input order), each writing its rows into its output."""

    interleave: Node
    convs: tuple[Node, ...]


# Convs that do not write their phases into the interleaved output: those without a conv kernel
# (AUTO after selection), the fused ones, and Winograd, whose output tiles at stride 2 touch
# twice the cache lines per store: DCGAN's 2x2 phases ran 4-8% slower writing in place
# (0.142 vs 0.137 ms, 0.132 vs 0.122 ms, 1 thread) than the interleave kernel saves.
NOT_WRITING_PHASES = frozenset({Algorithm.AUTO, Algorithm.EXPAND_DEPTHWISE, Algorithm.SUBPIXEL_SHUFFLE,
                                Algorithm.WINOGRAD})


def _phase_writes(graph: Graph, layouts: Layouts, marked: bool = False):
    """Every interleave reading, alone, only conv outputs that are no graph outputs, in the same
    blocked layout as its result, with whole channel blocks per phase and no crop; the convs
    must have a conv kernel picked that writes phases (not ``NOT_WRITING_PHASES``); with
    ``marked``, only interleaves marked ``in_place``."""
    producers, consumers = graph.producers(), graph.consumers()
    outputs = set(graph.outputs)
    for node in graph.nodes:
        if node.op is not Op.INTERLEAVE or (marked and not node.attrs.in_place):
            continue
        block = layouts[node.output]
        convs = tuple(producers.get(v) for v in node.inputs)
        if (not block or any(c is None or c.op is not Op.CONV or c.output in outputs
                             or c.attrs.algorithm in NOT_WRITING_PHASES or len(consumers.get(c.output, [])) != 1
                             or layouts.get(c.output) != block or not constant_weights(graph, c) for c in convs)):
            continue
        a, rows = node.attrs, node.inputs[0].shape[2:]
        channels = node.output.shape[1]
        if (any(a.starts) or tuple(a.out_size) != tuple(q * s for q, s in zip(rows, a.strides))
                or channels % block or any(v.shape[1] % channels for v in node.inputs)):
            continue
        yield PhaseWrites(node, convs)


def candidate_phase_writes(graph: Graph, layouts: Layouts) -> list[PhaseWrites]:
    """The interleaves whose phase convs can write into their output (see ``_phase_writes``)."""
    return list(_phase_writes(graph, layouts))


def marked_phase_writes(graph: Graph, layouts: Layouts) -> dict[str, PhaseWrites]:
    """The interleaves ``select_schedule`` marked ``in_place``, keyed by their node's name."""
    return {f.interleave.name: f for f in _phase_writes(graph, layouts, marked=True)}

"""Convs compiled as one kernel: a 1x1 expansion and the depthwise conv that alone reads it.

The graph keeps both convs (every pass, the reference interpreter and the tuner see two
layers). ``select_schedule`` marks a pair (both convs' ``algorithm`` becomes
``expand_depthwise``) when the target's backend has a pair kernel (``Backend.pair_kernel``:
the CPU's) that computes it, and the user asked for no kernel for
either layer, whatever the cost model or the tuning database picked for them one by one
(a layer timed alone has its input and output in cache; what the fusion saves is the trip
of the wide tensor through memory in the network); the lowering emits one kernel for each
marked pair. ``compile(disable_passes={FUSION})``
(``--disable-pass fuse_expand_depthwise``) keeps every pair apart.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from convc.ir import Graph, Node, Op
from convc.ir.ops.conv import Algorithm, constant_weights
from convc.layout import Layouts, conv_layouts
from convc.schedules.cpu.blocked import ConvProblem
from convc.schedules.cpu.blocked.expand_depthwise import FusedPair

FUSION = "fuse_expand_depthwise"  # the name ``disable_passes`` turns the fusion off by


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

"""Static cost accounting of a graph: parameters, FLOPs, activation memory.

FLOPs count a multiply-add as two operations. Peak activation memory follows the
seed documents' accounting for inference: only live activations are kept, a buffer
is freed after its last reader, and reshapes alias their input (no new buffer).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Collection

import numpy as np

from convc.ir import Graph, Node, Op, Value

ALIASING_OPS = frozenset({Op.RESHAPE})


def _conv_flops(node: Node) -> int:
    w = node.inputs[1].shape
    macs_per_output = int(np.prod(w[1:]))  # (C/g) * prod(kernel)
    return 2 * node.output.type.size * macs_per_output


def _conv_transpose_flops(node: Node) -> int:
    x, w = node.inputs[0].type, node.inputs[1].shape
    return 2 * x.size * int(np.prod(w[1:]))  # every input element scatters (M/g) * prod(kernel)


def _matmul_flops(node: Node) -> int:
    k = node.inputs[0].shape[-1]
    return 2 * node.output.type.size * k


def _pool_flops(node: Node) -> int:
    return node.output.type.size * int(np.prod(node.attrs.kernel))


def _reduce_flops(node: Node) -> int:
    return node.inputs[0].type.size


FLOP_RULES: dict[Op, Callable[[Node], int]] = {
    Op.CONV: _conv_flops,
    Op.CONV_TRANSPOSE: _conv_transpose_flops,
    Op.MATMUL: _matmul_flops,
    Op.MAX_POOL: _pool_flops,
    Op.AVG_POOL: _pool_flops,
    **{op: _reduce_flops for op in (Op.REDUCE_MEAN, Op.REDUCE_MAX, Op.REDUCE_MIN, Op.REDUCE_SUM,
                                    Op.REDUCE_PROD, Op.SOFTMAX)},
    **{op: (lambda node: 0) for op in (Op.RESHAPE, Op.TRANSPOSE, Op.BROADCAST_TO, Op.CONCAT, Op.SLICE,
                                       Op.PAD, Op.GATHER, Op.CAST)},
}


def node_flops(node: Node) -> int:
    """Floating-point operations of one node (elementwise ops: one per output element)."""
    rule = FLOP_RULES.get(node.op)
    return rule(node) if rule else node.output.type.size


def node_params(graph: Graph, node: Node) -> int:
    """Elements of the constant inputs (weights) a node reads."""
    return sum(v.type.size for v in node.inputs if graph.is_constant(v))


@dataclass(frozen=True)
class MemoryReport:
    peak_bytes: int          # most activation bytes alive at once, with buffer reuse
    total_bytes: int         # every activation buffer, if none were reused
    peak_after: str          # the node after which the peak occurs


def activation_memory(graph: Graph, unstored: Collection[Value] = ()) -> MemoryReport:
    """Liveness over the node order: graph inputs and node outputs are live until last read.
    ``unstored`` values take no memory (a fused kernel keeps them in registers and cache)."""
    last_use: dict = {}
    for index, node in enumerate(graph.nodes):
        for value in node.inputs:
            last_use[value] = index
    for value in graph.outputs:
        last_use[value] = len(graph.nodes)
    owner: dict = {}  # value -> the buffer (value) it lives in

    def buffer(value):
        return owner.get(value, value)

    live: dict = {v: v.type.nbytes for v in graph.inputs}
    readers_left: dict = {}
    for value in graph.inputs:
        readers_left[value] = last_use.get(value, -1)
    peak, peak_after, total = sum(live.values()), "(inputs)", sum(live.values())
    for index, node in enumerate(graph.nodes):
        for out in node.outputs:
            if node.op in ALIASING_OPS and not graph.is_constant(node.inputs[0]):
                owner[out] = buffer(node.inputs[0])
                readers_left[owner[out]] = max(readers_left.get(owner[out], -1), last_use.get(out, -1))
            elif out not in unstored:
                live[out] = out.type.nbytes
                total += out.type.nbytes
                readers_left[out] = last_use.get(out, -1)
        current = sum(live.values())
        if current > peak:
            peak, peak_after = current, node.name
        for buf in [b for b in live if readers_left.get(b, -1) <= index]:
            del live[buf]
    return MemoryReport(peak, total, peak_after)

"""Matrix product with NumPy semantics: batch axes broadcast, 1-D operands promoted and dropped.

After the passes it only multiplies two computed tensors (constant weights become convs).
"""
from __future__ import annotations

from typing import Sequence

from tvm import te

from convc.ir import Node, Op
from convc.lower.broadcast import broadcast_read
from convc.lower.registry import Tables, lowering


@lowering(Op.MATMUL)
def _matmul(node: Node, inputs: Sequence[te.Tensor], tables: Tables) -> te.Tensor:
    a, b = inputs
    ra, rb = len(a.shape), len(b.shape)
    k = te.reduce_axis((0, int(a.shape[-1])), name="k")
    n_batch = len(node.output.shape) - (ra >= 2) - (rb >= 2)

    def body(*i):
        batch, rest = i[:n_batch], list(i[n_batch:])
        row = [rest.pop(0)] if ra >= 2 else []
        col = [rest.pop(0)] if rb >= 2 else []
        lhs = broadcast_read(a, (*batch, *row, k)) if ra > 2 else a[(*row, k)]
        rhs = broadcast_read(b, (*batch, k, *col)) if rb > 2 else b[(k, *col)]
        return te.sum(lhs * rhs, axis=k)
    return te.compute(node.output.shape, body, name="matmul")

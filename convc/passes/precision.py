"""Run a float32 graph in float16: weights converted now, activations narrowed, I/O unchanged.

``convert_precision(graph)`` rebuilds the graph with every float32 constant stored as
float16 (conv weights are converted here, at compile time) and every float32 activation
computed in float16. The model's signature does not change: a float32 input is cast to
float16 where it is first read narrow, and a float32 output is cast back at the end.

Not every op is safe in float16. ``PRECISION`` says, per op, where it computes:

- ``HALF``: in float16. Data movement, comparisons, max/min and the piecewise-linear
  activations are exact; elementwise arithmetic and the bounded activations round once
  per result; ``conv`` accumulates in float32 inside its kernel (tensor cores, and the
  reference interpreter accumulates in float64), so only its stored result is narrow.
- ``FLOAT``: in float32, between casts. Sums over many terms (``reduce_mean``,
  ``reduce_sum``, ``reduce_prod``, ``softmax``, a ``matmul`` between activations, an
  ``avg_pool`` over a large window), results whose range float16 cannot hold (``exp``,
  ``pow``, ``reciprocal``), ``batch_norm`` if it is still there (``var + eps`` and its
  square root underflow), and ``resize`` with interpolation weights (its coordinates).
  Their constant inputs stay float32: these are the only float32 constants left.

Values are converted lazily and once: a value read by both kinds of op has one cast, and
a float32 input read only by ``FLOAT`` ops is never narrowed.
"""
from __future__ import annotations

import enum
import math
from typing import Callable

import numpy as np

from convc.errors import ConvcError
from convc.ir import Graph, GraphBuilder, Node, Op, Value, opdef
from convc.ir.ops.elementwise import CastAttrs
from convc.ir.ops.resize import ResizeMode
from convc.passes.base import Pass

WIDE = "float32"
NARROW = ("float16",)


class Compute(enum.Enum):
    """Where an op computes once the graph is narrowed."""

    HALF = "half"    # in the narrow dtype
    FLOAT = "float"  # in float32, its narrow inputs cast up and its result cast back down


HALF, FLOAT = Compute.HALF, Compute.FLOAT
LARGE_WINDOW = 16  # an average over more elements than this sums in float32

PRECISION: dict[Op, Compute | Callable[[Node], Compute]] = {
    # heavy: float32 accumulation inside the kernel (a transposed conv becomes a conv)
    Op.CONV: HALF, Op.CONV_TRANSPOSE: HALF,
    Op.MATMUL: FLOAT,  # between activations: the generic GEMM accumulates in its input dtype
    # normalisation and reductions: sums over many terms
    Op.BATCH_NORM: FLOAT, Op.SOFTMAX: FLOAT,
    Op.REDUCE_MEAN: FLOAT, Op.REDUCE_SUM: FLOAT, Op.REDUCE_PROD: FLOAT,
    Op.AVG_POOL: lambda node: FLOAT if math.prod(node.attrs.kernel) > LARGE_WINDOW else HALF,
    Op.MAX_POOL: HALF, Op.REDUCE_MAX: HALF, Op.REDUCE_MIN: HALF,
    # activations: exact or one rounding of a bounded result
    Op.RELU: HALF, Op.LEAKY_RELU: HALF, Op.ELU: HALF, Op.SIGMOID: HALF, Op.TANH: HALF,
    Op.HARD_SIGMOID: HALF, Op.HARD_SWISH: HALF, Op.CLIP: HALF, Op.PRELU: HALF,
    # elementwise arithmetic: one rounding; results that overflow float16 stay wide
    Op.ADD: HALF, Op.SUB: HALF, Op.MUL: HALF, Op.DIV: HALF, Op.SQRT: HALF, Op.LOG: HALF,
    Op.NEG: HALF, Op.ABS: HALF, Op.FLOOR: HALF, Op.CEIL: HALF, Op.MAXIMUM: HALF, Op.MINIMUM: HALF,
    Op.EXP: FLOAT, Op.POW: FLOAT, Op.RECIPROCAL: FLOAT,
    # exact: comparisons, logic, selection, casts, data movement
    Op.EQUAL: HALF, Op.LESS: HALF, Op.GREATER: HALF, Op.AND: HALF, Op.OR: HALF, Op.NOT: HALF,
    Op.WHERE: HALF, Op.CAST: HALF,
    Op.RESHAPE: HALF, Op.TRANSPOSE: HALF, Op.BROADCAST_TO: HALF, Op.CONCAT: HALF, Op.SLICE: HALF,
    Op.PAD: HALF, Op.GATHER: HALF, Op.INTERLEAVE: HALF,
    # nearest neighbour picks samples; interpolation weighs them by computed coordinates
    Op.RESIZE: lambda node: HALF if node.attrs.mode is ResizeMode.NEAREST else FLOAT,
}


def compute_of(node: Node) -> Compute:
    """Where ``node`` computes in a narrowed graph (see ``PRECISION``)."""
    rule = PRECISION[node.op]
    return rule if isinstance(rule, Compute) else rule(node)


def convert_precision(graph: Graph, dtype: str = "float16") -> Graph:
    """``graph`` computing in ``dtype`` (float16), with the same inputs and outputs.

    Every float32 constant becomes a ``dtype`` constant and every float32 activation a
    ``dtype`` one, except around the ops ``PRECISION`` keeps in float32; casts join the
    two. ``dtype="float32"`` returns ``graph`` itself. Other dtypes raise ``ConvcError``.
    """
    if dtype == WIDE:
        return graph
    if dtype not in NARROW:
        raise ConvcError(f"convert_precision: cannot compute in {dtype!r}; choose one of "
                         f"{', '.join((WIDE, *NARROW))}")
    return _Narrowing(graph, dtype).run()


class _Narrowing:
    """One walk over the graph: each source value's forms (by dtype) in the new graph."""

    def __init__(self, graph: Graph, dtype: str):
        self.graph, self.dtype = graph, dtype
        self.builder = GraphBuilder.like(graph)  # reserves every source name; unused constants drop out
        self.forms: dict[Value, dict[str, Value]] = {v: {v.dtype: v} for v in (*graph.inputs, *graph.constants)}

    def run(self) -> Graph:
        for node in self.graph.nodes:
            self._convert(node)
        outputs = [self.form(v, v.dtype) for v in self.graph.outputs]
        return self.builder.build(outputs, self.graph.output_names)

    def form(self, value: Value, dtype: str) -> Value:
        """``value`` as ``dtype`` in the new graph: a converted constant or a cast, made once."""
        forms = self.forms[value]
        if dtype not in forms:
            if value in self.graph.constants:
                array = np.asarray(self.graph.constants[value]).astype(dtype)
                forms[dtype] = self.builder.constant(array, f"{value.name}_{_short(dtype)}")
            else:
                source = forms.get(WIDE) or next(iter(forms.values()))
                forms[dtype] = self.builder.emit1(Op.CAST, [source], CastAttrs(dtype), fold=False,
                                                  name=f"{value.name}_to_{_short(dtype)}",
                                                  origin="convert_precision")
        return forms[dtype]

    def _convert(self, node: Node) -> None:
        compute = WIDE if compute_of(node) is FLOAT else self.dtype
        inputs = tuple(self.form(v, compute if v.dtype == WIDE else v.dtype) for v in node.inputs)
        attrs = node.attrs
        if node.op is Op.CAST and attrs.dtype == WIDE:
            attrs = CastAttrs(compute)
        types = opdef(node.op).infer(attrs, [v.type for v in inputs])
        outputs = tuple(Value(old.name, t) for old, t in zip(node.outputs, types))
        self.builder.nodes.append(Node(node.op, inputs, outputs, attrs, node.name, node.origin))
        for old, new in zip(node.outputs, outputs):
            self.forms[old] = {new.dtype: new}


def _short(dtype: str) -> str:
    return {"float16": "f16", "float32": "f32"}.get(dtype, dtype)


PASS = Pass("precision", convert_precision,
            "float16 halves memory traffic and runs on tensor cores; sums and wide ranges stay float32")

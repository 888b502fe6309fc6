"""Matrix products with a constant operand (fully connected layers) as convolutions.

* Flatten + FC: ``reshape(x (N, C, *S) -> (N, C*prod(S))) @ W[K, M]`` is a conv over
  ``x`` whose kernel covers the whole map: weight ``W.T.reshape(M, C, *S)``, no padding,
  giving (N, M, 1, ...), then a reshape to (N, M).
* Any other ``x[..., K] @ W[K, M]`` is a 1x1 conv: x as (B, K, 1), weight (M, K, 1),
  result reshaped to (..., M).
* A constant with batch axes, ``x[..., n, K] @ W[G..., K, M]``, is a grouped 1x1 conv
  with one group per batch element.
* A constant on the left is moved to the right: ``A @ x = (x^T @ A^T)^T``.
"""
from __future__ import annotations

import numpy as np

from convc.ir import ConvAttrs, Node, NoAttrs, Op, TensorType, Value, opdef
from convc.ir.ops.movement import BroadcastToAttrs, ReshapeAttrs, TransposeAttrs
from convc.passes.rewrite import Rewriter, Rule, rule_pass


def _matmul_shape(a: tuple[int, ...], b: tuple[int, ...], dtype: str) -> tuple[int, ...]:
    (out,) = opdef(Op.MATMUL).infer(NoAttrs(), [TensorType(a, dtype), TensorType(b, dtype)])
    return out.shape


def _conv(ctx: Rewriter, x: Value, weight: np.ndarray, groups: int = 1) -> Value:
    """Unpadded stride-1 conv of ``x`` with a constant weight."""
    n = x.type.rank - 2
    attrs = ConvAttrs((1,) * n, (0,) * n, (0,) * n, (1,) * n, groups)
    return ctx.emit(Op.CONV, [x, ctx.constant(weight.astype(x.dtype), "weight")], attrs)


def _reshape(ctx: Rewriter, x: Value, shape: tuple[int, ...]) -> Value:
    return x if x.shape == tuple(shape) else ctx.emit(Op.RESHAPE, [x], ReshapeAttrs(tuple(shape)))


def _swap_last(ctx: Rewriter, x: Value) -> Value:
    perm = (*range(x.type.rank - 2), x.type.rank - 1, x.type.rank - 2)
    return ctx.emit(Op.TRANSPOSE, [x], TransposeAttrs(perm))


def _flatten_source(ctx: Rewriter, x: Value) -> Value | None:
    """The (N, C, *S) map that ``x`` (N, C*prod(S)) flattens, if it is a Flatten."""
    node = ctx.producer(x)
    if node is None or node.op is not Op.RESHAPE or x.type.rank != 2:
        return None
    src = node.inputs[0]
    return src if src.type.rank >= 3 and src.shape[0] == x.shape[0] else None


def _dense(ctx: Rewriter, x: Value, w: np.ndarray, out: tuple[int, ...]) -> Value:
    """x[..., K] @ w[K, M] as a conv, reshaped to ``out``."""
    k, m = w.shape
    src = _flatten_source(ctx, x)
    if src is None:
        src = _reshape(ctx, x, (x.type.size // k, k, 1))
    return _reshape(ctx, _conv(ctx, src, w.T.reshape(m, *src.shape[1:])), out)


def _batched(ctx: Rewriter, x: Value, w: np.ndarray, out: tuple[int, ...]) -> Value:
    """x[..., n, K] @ w[G..., K, M] as a 1x1 conv with one group per batch element."""
    x = _reshape(ctx, x, (1, x.shape[0])) if x.type.rank == 1 else x
    (n, k), m = x.shape[-2:], w.shape[-1]
    batch = np.broadcast_shapes(x.shape[:-2], w.shape[:-2])
    g = int(np.prod(batch))
    if x.shape[:-2] != batch:
        x = ctx.emit(Op.BROADCAST_TO, [x], BroadcastToAttrs((*batch, n, k)))
    x = ctx.emit(Op.TRANSPOSE, [_reshape(ctx, x, (g, n, k))], TransposeAttrs((1, 0, 2)))
    weight = np.broadcast_to(w, (*batch, k, m)).reshape(g, k, m).transpose(0, 2, 1).reshape(g * m, k, 1)
    y = _conv(ctx, _reshape(ctx, x, (n, g * k, 1)), weight, groups=g)
    y = ctx.emit(Op.TRANSPOSE, [_reshape(ctx, y, (n, g, m))], TransposeAttrs((1, 0, 2)))
    return _reshape(ctx, y, out)


def _times_constant(ctx: Rewriter, x: Value, w: np.ndarray) -> Value:
    """x @ w for a constant w of any rank, as convs."""
    out = _matmul_shape(x.shape, w.shape, x.dtype)
    w2 = w.reshape(-1, 1) if w.ndim == 1 else w
    if all(d == 1 for d in w2.shape[:-2]):
        return _dense(ctx, x, w2.reshape(w2.shape[-2:]), out)
    return _batched(ctx, x, w2, out)


def _constant_times(ctx: Rewriter, a: np.ndarray, x: Value) -> Value:
    """a @ x for a constant a: (x^T @ a^T)^T, transposing only what has two axes."""
    xt = x if x.type.rank == 1 else _swap_last(ctx, x)
    y = _times_constant(ctx, xt, a if a.ndim == 1 else np.swapaxes(a, -1, -2))
    return y if x.type.rank == 1 or a.ndim == 1 else _swap_last(ctx, y)


def from_matmul(ctx: Rewriter, node: Node) -> tuple[Value] | None:
    a, b = ctx.inputs(node)
    ca, cb = ctx.const(a), ctx.const(b)
    if ca is not None and cb is not None:
        return (ctx.emit(Op.MATMUL, [a, b]),)  # folds
    if cb is not None:
        return (_times_constant(ctx, a, cb),)
    if ca is not None:
        return (_constant_times(ctx, ca, b),)
    return None


RULES = (Rule("matmul_with_constant_as_conv", frozenset({Op.MATMUL}), from_matmul,
              "an FC layer is a conv whose kernel covers the map (or a 1x1 conv), so one backend op serves both"),)

PASS = rule_pass("fc_to_conv", "fully connected layers become convolutions", RULES)

"""TE pieces the CUDA conv kernels share: arguments, the padded input read, the epilogue.

Accumulation, bias and epilogue are in float32 (``ACC_DTYPE``) for float16 data too.
Index conventions: data ``(N, C, *S)`` plain; output ``(N, M, *O)``; a reduction index
``k`` over one group's ``C/g * taps`` runs channel-major, taps in row-major order of
the kernel window (the order of ONNX's ``(M, C/g, *K)`` weight flattened per channel).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from tvm import s_tir, te, tirx

from convc.lower.broadcast import broadcast_read
from convc.lower.conv import apply_epilogue
from convc.lower.elementwise import dtype_of
from convc.schedules.cpu.blocked.problem import ConvProblem

PATCH = "patch"        # the (virtual) patch matrix of the GEMM-shaped kernels
ACC = "acc"            # the accumulating block of every kernel
ACC_DTYPE = "float32"  # accumulators, bias and epilogue (float16 data is widened)
EPILOGUE = "out"       # bias + epilogue, written once to the output


def widen(value):
    """``value`` (a TIR expression or tensor element) as ``ACC_DTYPE``."""
    return value if dtype_of(value) == ACC_DTYPE else value.astype(ACC_DTYPE)


def multiply_add(a, b):
    """One term of an accumulation: ``a * b`` in ``ACC_DTYPE``."""
    return widen(a) * widen(b)


def unravel(index, extents: Sequence[int]) -> list:
    """The row-major coordinates of a flat ``index`` over ``extents``."""
    coords = []
    for extent in reversed(extents[1:]):
        coords.append(tirx.floormod(index, extent))
        index = tirx.floordiv(index, extent)
    return [index, *reversed(coords)]


def flat(coords: Sequence, extents: Sequence[int]):
    """The row-major flat index of ``coords`` over ``extents``."""
    index = coords[0]
    for c, extent in zip(coords[1:], extents[1:]):
        index = index * extent + c
    return index


def inputs(p: ConvProblem, weight_shape: Sequence[int]
           ) -> tuple[te.Tensor, te.Tensor, te.Tensor | None, list[te.Tensor]]:
    """Placeholders of data, packed weight, bias ``(M,)`` (None without one) and epilogue operands."""
    data = te.placeholder(p.in_shape, p.dtype, name="data")
    weight = te.placeholder(tuple(weight_shape), p.dtype, name="weight")
    bias = te.placeholder((p.out_channels,), p.dtype, name="bias") if p.has_bias else None
    operands = [te.placeholder(shape, p.dtype, name=f"operand{i}") for i, shape in enumerate(p.operand_shapes)]
    return data, weight, bias, operands


def padded_read(p: ConvProblem, data: te.Tensor, n, channel, out_pos: Sequence, taps: Sequence,
                extra_inside=None):
    """``data`` at the input position output ``out_pos`` reads through kernel tap ``taps``,
    zero in the padding (and where ``extra_inside`` is false)."""
    pos = [o * s + t * d - b for o, t, s, d, b in zip(out_pos, taps, p.strides, p.dilations, p.pads_begin)]
    checks = [x >= 0 for x, b in zip(pos, p.pads_begin) if b > 0]
    checks += [x < size for x, size, e in zip(pos, p.in_size, p.pads_end) if e > 0]
    if extra_inside is not None:
        checks.append(extra_inside)
    if not checks:
        return data[(n, channel, *pos)]
    return tirx.if_then_else(tirx.all(*checks), data[(n, channel, *pos)], tirx.const(0.0, p.dtype))


def finish(p: ConvProblem, value, bias: te.Tensor | None, channel, operands: Sequence[te.Tensor], index):
    """``value`` (an ``ACC_DTYPE`` accumulator) plus the bias, through the epilogue steps
    as ``convc.lower.conv.conv_nd`` applies them, in ``ACC_DTYPE``, then cast to ``p.dtype``."""
    if bias is not None:
        value = value + widen(bias[channel])
    value = apply_epilogue(p.epilogue, value, (widen(broadcast_read(t, index)) for t in operands))
    return value if p.dtype == ACC_DTYPE else value.astype(p.dtype)


def epilogue(p: ConvProblem, acc: te.Tensor, bias: te.Tensor | None, operands: Sequence[te.Tensor]) -> te.Tensor:
    """The output ``(N, M, *O)`` from ``acc`` of the same shape (see ``finish``)."""
    return te.compute(p.out_shape, lambda *i: finish(p, acc[i], bias, i[1], operands, i), name=EPILOGUE)


def flat_epilogue(p: ConvProblem, acc: te.Tensor, bias: te.Tensor | None,
                  operands: Sequence[te.Tensor]) -> te.Tensor:
    """The output in the flat domain ``(N, G, M/G, P)`` (``P`` the output positions in
    row-major order) from ``acc`` indexed ``[n, g, m, q]`` (it may be padded beyond
    ``M/G`` and ``P``); ``unflatten_output`` gives the output buffer its ``(N, M, *O)`` shape."""
    mg = p.out_per_group

    def body(n, g, m, q):
        channel = g * mg + m
        return finish(p, acc[n, g, m, q], bias, channel, operands, (n, channel, *unravel(q, p.out_size)))
    return te.compute((p.batch, p.groups, mg, out_positions(p)), body, name=EPILOGUE)


def unflatten_output(sch, p: ConvProblem) -> None:
    """Give the output of a ``flat_epilogue`` its ``(N, M, *O)`` shape (same memory order)."""
    mg = p.out_per_group
    sch.transform_layout(sch.get_sblock(EPILOGUE), ("write", 0),
                         lambda n, g, m, q: (n, g * mg + m, *unravel(q, p.out_size)))


def prim_func(data, weight, bias, operands, out) -> tirx.PrimFunc:
    """The PrimFunc over the kernel arguments in the protocol's order."""
    args = [data, weight, *([bias] if bias is not None else []), *operands, out]
    return te.create_prim_func(args)


def out_positions(p: ConvProblem) -> int:
    return math.prod(p.out_size)


def loops_below(sch, block, loop) -> list:
    """The loops of ``block`` nested inside ``loop`` (after a ``compute_at`` to ``loop``)."""
    anchor = sch.get(loop)
    loops = sch.get_loops(block)
    depth = next(i for i, candidate in enumerate(loops) if sch.get(candidate).same_as(anchor))
    return loops[depth + 1:]


def ceil_to(x: int, multiple: int) -> int:
    """``x`` rounded up to a multiple of ``multiple``."""
    return -(-x // multiple) * multiple


def gemm_compute(p: ConvProblem, tiles: tuple[int, int, int], patch_element) -> tuple[s_tir.Schedule, object]:
    """The conv as one GEMM per (image, group), unscheduled, and its weight packer.

    ``acc[n, g, m, q] = sum_k W[g, k, m] * patch[n, g, k, q]`` with ``m`` an output channel of
    the group, ``q`` an output position (row major) and ``k`` over ``C/g * taps``, each padded
    up to a multiple of ``tiles`` = (m, k, q) so the schedule needs no bounds checks inside.
    ``patch_element(data, n, g, k, q, inside)`` reads the patch element, zero where ``inside``
    (None or a bounds condition) is false. The packed weight is ``(G, Kp, Mp)``, zero-padded;
    the bias stays ``(M,)``. Returns the schedule (blocks ``PATCH``, ``ACC``, ``EPILOGUE``)
    and ``pack(weight, bias) -> (packed_weight, packed_bias)``.
    """
    g, mg, k, positions = p.groups, p.out_per_group, p.in_per_group * p.taps, out_positions(p)
    mp, kp, pp = ceil_to(mg, tiles[0]), ceil_to(k, tiles[1]), ceil_to(positions, tiles[2])
    data, weight, bias, operands = inputs(p, (g, kp, mp))

    def patch_body(n, gi, ki, q):
        checks = ([ki < k] if kp > k else []) + ([q < positions] if pp > positions else [])
        return patch_element(data, n, gi, ki, q, tirx.all(*checks) if checks else None)
    patch = te.compute((p.batch, g, kp, pp), patch_body, name=PATCH)
    rk = te.reduce_axis((0, kp), name="rk")
    acc = te.compute((p.batch, g, mp, pp), lambda n, gi, m, q: te.sum(
        multiply_add(weight[gi, rk, m], patch[n, gi, rk, q]), axis=rk), name=ACC)
    out = flat_epilogue(p, acc, bias, operands)
    sch = s_tir.Schedule(prim_func(data, weight, bias, operands, out))
    unflatten_output(sch, p)

    def pack(w: np.ndarray, b: np.ndarray | None):
        packed = np.zeros((g, kp, mp), dtype=p.dtype)
        packed[:, :k, :mg] = np.asarray(w, dtype=np.float32).reshape(g, mg, k).transpose(0, 2, 1)
        return packed, None if b is None else np.asarray(b, dtype=p.dtype).reshape(p.out_channels)
    return sch, pack


def patch_read(p: ConvProblem, data: te.Tensor, n, g, k, q, inside):
    """Patch element ``k`` (channel of group ``g``, then tap) of output position ``q``, read from
    the input with the padding predicate."""
    channel, *taps = unravel(k, (p.in_per_group, *p.kernel))
    return padded_read(p, data, n, g * p.in_per_group + channel, unravel(q, p.out_size), taps, inside)

"""``subpixel_shuffle``: a sub-pixel conv that writes its phases already interleaved.

When every phase of a transposed conv has the same taps and the same offset, the sub-pixel
pass makes it ONE stride-1 conv with ``P*M`` output channels (channel ``p*M + m``, ``P`` the
phases) followed by an ``interleave`` (a pixel shuffle). Run as two kernels, the conv writes
a blocked ``P*M``-channel tensor, the shuffle reads it back and writes the plain output, and
a layout copy usually blocks the input first. Here one kernel reads the plain input and
writes the plain output once:

* ``acc[n, m, p, *q] = sum_{c, *k} x[n, c, q + k*d] * W[p*M + m, c, *k]`` (the padded input),
  vectorised over the last spatial axis ``q`` (``vec`` positions per vector, ``vectors``
  vectors per register tile) for ``oc_tile`` output channels times all ``P`` phases: per
  input channel and tap, ``vectors`` loads of consecutive inputs feed
  ``P * oc_tile * vectors`` FMAs, each weight a broadcast scalar;
* ``out[n, m, q1, r1, ..., qn, rn] = epilogue(acc[n, m, p(r), *q] + bias[p*M + m])``, whose
  row-major layout is the plain ``(N, M, Q1*s1, ..., Qn*sn)`` output (the caller reshapes
  it for free); the phases of the last axis are interleaved in registers before the store.

Applies to plain 1-, 2- and 3-D convs, groups 1, stride 1, bias and unary epilogue steps,
where the phase grid is the whole output (no crop). Arguments: data (plain), weight
``(M/oc_tile, C, *K, P, oc_tile)``, bias ``(P*M,)`` (if any), output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from tvm import s_tir, te, tirx

from convc.schedules.cpu.blocked import stages
from convc.schedules.cpu.blocked.epilogue import UNARY, unsupported_step
from convc.schedules.cpu.blocked.kernel import KernelBuild, mark_scheduled
from convc.schedules.cpu.blocked.machine import Machine
from convc.schedules.cpu.blocked.problem import ConvProblem


@dataclass(frozen=True)
class ShuffledConv:
    """The phase conv ``conv`` (``P*M`` output channels, phase-major) and the phase grid
    ``phases`` (the interleave's strides) its output is shuffled by."""

    conv: ConvProblem
    phases: tuple[int, ...]

    @property
    def phase_count(self) -> int:
        return math.prod(self.phases)

    @property
    def out_channels(self) -> int:
        return self.conv.out_channels // self.phase_count

    @property
    def out_shape(self) -> tuple[int, ...]:
        """The plain output ``(N, M, Q1*s1, ...)``."""
        return (self.conv.batch, self.out_channels,
                *(q * s for q, s in zip(self.conv.out_size, self.phases)))

    @property
    def stored_shape(self) -> tuple[int, ...]:
        """The kernel's output ``(N, M, Q1, s1, ..., Qn, sn)`` (same bytes as ``out_shape``)."""
        return (self.conv.batch, self.out_channels,
                *(d for q, s in zip(self.conv.out_size, self.phases) for d in (q, s)))


@dataclass(frozen=True)
class ShuffledConfig:
    """Output channels per register tile (each with all its phases) and vectors of
    ``vec`` positions along the last axis per tile."""

    oc_tile: int
    vectors: int
    vec: int


class SubpixelShuffle:
    """The kernel: when it applies, its knobs, its build (see the module docstring)."""

    name = "subpixel_shuffle"

    def decline(self, s: ShuffledConv) -> str | None:
        """None when this kernel computes ``s``, else why not."""
        p = s.conv
        if p.dtype != "float32":
            return f"dtype {p.dtype} (only float32)"
        if p.in_block or p.out_block:
            return "reads and writes plain layouts only"
        if p.groups != 1:
            return f"groups={p.groups}"
        if any(st != 1 for st in p.strides):
            return f"strides {p.strides}"
        if p.operand_shapes:
            return "an epilogue with operands"
        if len(s.phases) != p.ndim or p.out_channels % s.phase_count:
            return f"{p.out_channels} channels do not split into {s.phase_count} phases"
        if stages.widest_vector(p.out_size[-1], 16) < MIN_VECTOR:
            return f"{p.out_size[-1]} positions on the last axis: no vector of {MIN_VECTOR} or more divides them"
        return unsupported_step(p.epilogue)

    def default_config(self, s: ShuffledConv, machine: Machine) -> ShuffledConfig:
        """The register tile with the most FMAs per input channel and tap that fits the vector
        registers (accumulators, the input vectors and a few broadcast weights), fewest loads
        per FMA on a tie; a tile must divide the channels and the last axis."""
        p, phases = s.conv, s.phase_count
        vec = stages.widest_vector(p.out_size[-1], machine.lanes)
        width = p.out_size[-1] // vec
        options = [(t, v) for t in stages.divisors(s.out_channels) for v in stages.divisors(width)
                   if phases * t * v + v + BROADCAST_REGISTERS <= machine.registers]
        tile, vectors = max(options or [(1, 1)],
                            key=lambda tv: (phases * tv[0] * tv[1], -(1 / (phases * tv[0]) + 1 / tv[1])))
        return ShuffledConfig(tile, vectors, vec)

    def build(self, s: ShuffledConv, config: ShuffledConfig) -> KernelBuild:
        return _build(s, config)


# Narrower vectors leave the kernel below the two-kernel path: 64 -> 4x32 channels over 28x28
# (vectors of 4) ran 38 GFLOP/s on one Zen 4 core, against ~100 with vectors of 16.
MIN_VECTOR = 8

# Vector registers LLVM keeps for weights broadcast from memory between FMAs.
BROADCAST_REGISTERS = 4


def _build(s: ShuffledConv, cfg: ShuffledConfig) -> KernelBuild:
    p, n_sp, phases, m_out = s.conv, s.conv.ndim, s.phase_count, s.out_channels
    tile = cfg.oc_tile
    data = te.placeholder(p.in_shape, p.dtype, name="data")
    weight = te.placeholder((m_out // tile, p.in_channels, *p.kernel, phases, tile), p.dtype, name="weight")
    bias = te.placeholder((p.out_channels,), p.dtype, name="bias") if p.has_bias else None
    padded = stages.pad_stage(p, data)
    rc = te.reduce_axis((0, p.in_channels), "c")
    ks = [te.reduce_axis((0, k), f"k{i}") for i, k in enumerate(p.kernel)]

    def body(n, m, ph, *q):
        x = padded[(n, rc, *stages.window(p, q, ks))]
        return te.sum(x * weight[(m // tile, rc, *ks, ph, m % tile)], axis=[rc, *ks])

    acc = te.compute((p.batch, m_out, phases, *p.out_size), body, name="acc")

    def const(value: float):
        return tirx.const(value, p.dtype)

    def shuffle(n, m, *qr):
        q, r = qr[0::2], qr[1::2]
        ph = 0
        for ri, si in zip(r, s.phases):
            ph = ph * si + ri
        y = acc[(n, m, ph, *q)]
        if bias is not None:
            y = y + bias[ph * m_out + m]
        for step in p.epilogue:
            y = UNARY[step.op](step.attrs, y, const)
        return y

    out = te.compute(s.stored_shape, shuffle, name="out")
    func = te.create_prim_func([data, weight, *([bias] if bias is not None else []), out])
    sch = s_tir.Schedule(func)
    block = sch.get_sblock("acc")
    loops = sch.get_loops(block)
    n, m, ph, q = loops[0], loops[1], loops[2], loops[3:3 + n_sp]
    reduction = loops[3 + n_sp:]
    m_o, m_i = sch.split(m, [None, tile])
    q_o, q_m, q_i = sch.split(q[-1], [None, cfg.vectors, cfg.vec])
    outer = [n, *q[:-1], q_o, m_o]
    sch.reorder(*outer, *reduction, m_i, ph, q_m, q_i)
    fused = sch.fuse(*outer)
    sch.parallel(fused)
    sch.set_scope(block, 0, "local")
    sch.reverse_compute_at(sch.get_sblock("out"), fused)
    for loop in (m_i, ph, q_m):
        sch.unroll(loop)
    sch.vectorize(q_i)
    sch.decompose_reduction(block, reduction[0])
    out_loops = sch.get_loops(sch.get_sblock("out"))[1:]
    for loop in out_loops[:-2]:
        sch.unroll(loop)
    sch.vectorize(sch.fuse(*out_loops[-2:]))  # the last axis' positions and phases, interleaved
    if p.padded:
        stages.schedule_copy(sch, "pad")
    return KernelBuild(mark_scheduled(sch.mod["main"]), _packer(phases, tile))


def _packer(phases: int, tile: int):
    def pack(w: np.ndarray, bias):
        pm, c, *kernel = w.shape
        x = w.reshape(phases, pm // phases // tile, tile, c, *kernel)
        order = (1, 3, *range(4, 4 + len(kernel)), 0, 2)
        return np.ascontiguousarray(x.transpose(order)), bias
    return pack


SUBPIXEL_SHUFFLE = SubpixelShuffle()

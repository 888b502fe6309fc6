"""The register-tiled blocked conv shared by ``direct`` and ``pointwise``.

``acc[n, ob, *o, oi] = sum_{ro, *k, ri} x[n, c_in, o*s + k*d] * W[ob//t, ro, *k, ri, (ob%t)*vb + oi]``
with ``vb`` the accumulator block, ``t = oc_tile // vb`` and the input channel
``c_in = group*cpg + ro*rb + ri`` (``rb`` the input block, or all channels of a group when
the input is plain). The register tile is ``reg_n`` positions of the last output axis
times ``oc_tile`` channels; the reduction runs outside it, the tile's ``oc_tile/vb``
vectors and ``reg_n`` positions are unrolled, the ``vb`` lanes vectorised.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from tvm import s_tir, te

from convc.schedules.cpu.blocked import stages
from convc.schedules.cpu.blocked.kernel import KernelBuild, mark_scheduled
from convc.schedules.cpu.blocked.layout import Channel
from convc.schedules.cpu.blocked.machine import MACHINE
from convc.schedules.cpu.blocked.problem import ConvProblem


@dataclass(frozen=True)
class TileConfig:
    """Knobs of the register tile: output channels per tile (a multiple of the
    accumulator block ``vec_block``) and output positions along the last axis; whether
    the channel tiles are the outer parallel loop (else the positions are)."""

    vec_block: int
    oc_tile: int
    reg_n: int
    oc_outer: bool = True


def reduction_block(p: ConvProblem) -> int:
    return p.in_block or p.in_per_group


def tiled_decline(p: ConvProblem) -> str | None:
    if p.in_block and p.in_per_group % p.in_block:
        return f"{p.in_per_group} input channels per group do not fill blocks of {p.in_block}"
    if p.out_block and p.out_per_group % p.out_block:
        return f"{p.out_per_group} output channels per group do not fill blocks of {p.out_block}"
    if stages.vector_block(p, MACHINE.lanes) < 4:
        return f"{p.out_per_group} output channels per group: no vector block of 4 or 8"
    return None


def best_reg_n(width: int, limit: int) -> int:
    """The register-tile width in [limit//2, limit] wasting the fewest tail positions."""
    options = range(min(limit, width), max(1, min(limit, width) // 2) - 1, -1)
    return min(options, key=lambda r: (-(-width // r) * r - width, -r))


def tile_config(p: ConvProblem, oc_tile_pref: int) -> TileConfig:
    """Channel tile: ``oc_tile_pref`` if it divides the channels, else one vector block;
    positions: as many as registers allow (accumulators + weights + one broadcast)."""
    vb = stages.vector_block(p, MACHINE.lanes)
    tile = oc_tile_pref if p.out_channels % oc_tile_pref == 0 and oc_tile_pref % vb == 0 else vb
    vectors = max(1, tile // MACHINE.lanes)
    limit = max(1, (MACHINE.registers - 2) // vectors)
    in_bytes = 4 * p.in_channels * math.prod(p.in_size)
    w_bytes = 4 * p.out_channels * p.in_per_group * p.taps
    return TileConfig(vb, tile, best_reg_n(p.out_size[-1], limit), in_bytes <= w_bytes)


def tile_space(p: ConvProblem, default: TileConfig) -> list[TileConfig]:
    vb = default.vec_block
    tiles = [t for t in (vb, 2 * vb, 4 * vb) if p.out_channels % t == 0]
    configs = [TileConfig(vb, t, r, outer) for t in tiles for r in range(1, 15) for outer in (True, False)
               if (t // MACHINE.lanes or 1) * (r + 1) + 1 <= MACHINE.registers]
    return [default] + [c for c in configs if c != default]


def build_tiled(p: ConvProblem, cfg: TileConfig) -> KernelBuild:
    n_sp = p.ndim
    vb, tile, rb = cfg.vec_block, cfg.oc_tile, reduction_block(p)
    t = tile // vb
    cpg = p.in_per_group
    args = stages.placeholders(p, (p.out_channels // tile, cpg // rb, *p.kernel, rb, tile))
    padded = stages.pad_stage(p, args.data)
    ro = te.reduce_axis((0, cpg // rb), "ro")
    ks = [te.reduce_axis((0, k), f"k{i}") for i, k in enumerate(p.kernel)]
    ri = te.reduce_axis((0, rb), "ri")

    def in_channel(ob):
        group = 0 if p.groups == 1 else (ob * vb) // p.out_per_group
        if p.in_block:
            return Channel(group * (cpg // rb) + ro, ri, rb)
        return Channel(group * cpg + ro * rb + ri)

    def body(n, ob, *rest):
        *o, oi = rest
        x = stages.read(p, padded, n, in_channel(ob), stages.window(p, o, ks))
        w = args.weight[(ob // t, ro, *ks, ri, (ob % t) * vb + oi)]
        return te.sum(x * w, axis=[ro, *ks, ri])

    acc = te.compute((p.batch, p.out_channels // vb, *p.out_size, vb), body, name="acc")
    out = stages.output(p, args, stages.acc_reader(acc, vb))
    func = te.create_prim_func(args.signature(out))
    sch = s_tir.Schedule(func)
    block = sch.get_sblock("acc")
    loops = sch.get_loops(block)
    n, ob, o, oi = loops[0], loops[1], loops[2:2 + n_sp], loops[2 + n_sp]
    r_o, r_k, r_i = loops[3 + n_sp], loops[4 + n_sp:-1], loops[-1]
    ob_o, ob_i = sch.split(ob, [None, t])
    last_o, last_i = sch.split(o[-1], [None, cfg.reg_n])
    outer = [n, ob_o, *o[:-1], last_o] if cfg.oc_outer else [n, *o[:-1], last_o, ob_o]
    sch.reorder(*outer, r_o, *r_k, r_i, last_i, ob_i, oi)
    fused = sch.fuse(*outer)
    sch.parallel(fused)
    sch.set_scope(block, 0, "local")
    sch.reverse_compute_at(sch.get_sblock("out"), fused)
    sch.unroll(last_i)
    sch.unroll(ob_i)
    sch.vectorize(oi)
    sch.decompose_reduction(block, r_o)
    if p.out_block:
        sch.vectorize(sch.get_loops(sch.get_sblock("out"))[-1])
    if p.padded:
        stages.schedule_copy(sch, "pad")
    return KernelBuild(mark_scheduled(sch.mod["main"]), _packer(tile, rb))


def _packer(tile: int, rb: int):
    def pack(w, bias):
        return stages.pack_blocked_weight(w, tile, rb), bias
    return pack


def utilisation(p: ConvProblem, cfg: TileConfig) -> float:
    """Useful lanes x useful tile positions (the tail) x a penalty for tiles too small to
    hide the FMA latency (fewer than 8 independent accumulators)."""
    lanes = min(1.0, cfg.vec_block / MACHINE.lanes)
    width = p.out_size[-1]
    tail = width / (-(-width // cfg.reg_n) * cfg.reg_n)
    accumulators = cfg.reg_n * max(1, cfg.oc_tile // MACHINE.lanes)
    return lanes * tail * min(1.0, accumulators / 8)


def pad_bytes(p: ConvProblem) -> float:
    """The padding copy: the padded input written once and read back."""
    if not p.padded:
        return 0.0
    size = p.batch * p.in_channels
    for i, pb, pe in zip(p.in_size, p.pads_begin, p.pads_end):
        size *= i + pb + pe
    return 2.0 * 4 * size

"""``im2col``: per tile, copy the receptive fields into a patch matrix, then a packed GEMM.

For a tile of ``reg_n * row_tiles`` positions along the last output axis, the patch
``P[pos, *k, cb, ci]`` (one contiguous row of ``C * prod(K)`` per position, zeros where
the window leaves the input: the padding costs nothing extra) is built once and reused
by every output-channel tile; the GEMM micro-kernel is the same register tile as
``direct`` (``reg_n`` positions x ``oc_tile`` channels) with the weight packed in the
patch's row order ``(M/T, *K, C/rb, rb, T)``. Groups are left to ``direct``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import s_tir, te, tirx

from convc.schedules.cpu.blocked import stages, tiled
from convc.schedules.cpu.blocked.kernel import Kernel, KernelBuild, mark_scheduled
from convc.schedules.cpu.blocked.layout import Channel, load
from convc.schedules.cpu.blocked.machine import Machine
from convc.schedules.cpu.blocked.problem import ConvProblem


@dataclass(frozen=True)
class Im2colConfig:
    """The GEMM register tile and how many of them share one patch tile."""

    vec_block: int
    oc_tile: int
    reg_n: int
    row_tiles: int


# Cost of gathering one patch element from a plain (N, C, *S) input, as bytes of streamed
# memory: ~2.5 cycles per element, measured (1 thread): 1-D 128->64 k2 over 256 positions,
# im2col 128 us vs direct 53 us; 3x3 64->64 56x56, 1.9 vs 1.3 ms; 7x7/2 stem, 1.9 vs 1.4 ms.
PLAIN_GATHER_BYTES = 32


class Im2col(Kernel):
    name = "im2col"
    efficiency = 0.85

    def _decline(self, p: ConvProblem) -> str | None:
        if p.groups != 1:
            return f"groups={p.groups} (direct serves grouped convs)"
        if p.taps == 1 and not p.padded and all(s == 1 for s in p.strides):
            return "a plain 1x1 conv needs no patches"
        return tiled.tiled_decline(p)

    def _default_config(self, p: ConvProblem, machine: Machine) -> Im2colConfig:
        """The direct kernel's register tile; up to 4 of them per patch tile, but only as many
        as divide the row (a patch tile with a ragged end ran 3x slower, measured)."""
        t = tiled.tile_config(p, machine)
        width = p.out_size[-1]
        rows = max((r for r in range(1, 5) if width % (t.reg_n * r) == 0), default=1)
        return Im2colConfig(t.vec_block, t.oc_tile, t.reg_n, rows)

    def _space(self, p: ConvProblem, machine: Machine) -> list[Im2colConfig]:
        default = self._default_config(p, machine)
        configs = [Im2colConfig(t.vec_block, t.oc_tile, t.reg_n, rows)
                   for t in tiled.tile_space(p, machine) if t.oc_outer and not t.stream_weights
                   for rows in (1, 2, 4, 8)]
        return [default] + [c for c in configs if c != default]

    def _utilisation(self, p: ConvProblem, config: Im2colConfig, machine: Machine) -> float:
        return tiled.utilisation(p, tiled.TileConfig(config.vec_block, config.oc_tile, config.reg_n),
                                 machine)

    def _extra_bytes(self, p: ConvProblem, config: Im2colConfig, machine: Machine) -> float:
        """The patch matrix written and read once per tile (it spills out of L2 when large),
        gathered element by element from a plain input, and the whole weight streamed once per patch tile when it does not stay in L2 (every
        patch tile meets every output channel)."""
        row = 4 * p.in_channels * p.taps
        patch_tile = row * config.reg_n * config.row_tiles
        spill = 1.0 if patch_tile > machine.l2_bytes // 4 else 0.25
        patches = spill * 2 * row * p.batch * int(np.prod(p.out_size))
        if not p.in_block:  # each patch element is a scalar load from another channel plane
            patches += PLAIN_GATHER_BYTES * (row // 4) * p.batch * int(np.prod(p.out_size))
        weight = 4 * p.out_channels * p.in_channels * p.taps
        if weight <= machine.l2_bytes // 2:
            return patches
        tiles = p.batch * int(np.prod(p.out_size[:-1])) * -(-p.out_size[-1] // (config.reg_n * config.row_tiles))
        return patches + weight * (tiles - 1)

    def build(self, p: ConvProblem, config: Im2colConfig) -> KernelBuild:
        n_sp, vb, tile = p.ndim, config.vec_block, config.oc_tile
        rb = tiled.reduction_block(p)
        t, cblocks = tile // vb, p.in_channels // rb
        args = stages.placeholders(p, (p.out_channels // tile, *p.kernel, cblocks, rb, tile))

        def patch_body(n, *idx):
            o, k, (cb, ci) = idx[:n_sp], idx[n_sp:2 * n_sp], idx[2 * n_sp:]
            pos = [w - pb for w, pb in zip(stages.window(p, o, k), p.pads_begin)]
            channel = Channel(cb, ci, rb) if p.in_block else Channel(cb * rb + ci)
            value = load(args.data, p.in_block, n, channel, pos)
            if not p.padded:
                return value
            inside = tirx.all(*[tirx.all(x >= 0, x < size) for x, size in zip(pos, p.in_size)])
            return tirx.if_then_else(inside, value, tirx.const(0.0, p.dtype))

        patch = te.compute((p.batch, *p.out_size, *p.kernel, cblocks, rb), patch_body, name="patch")
        ks = [te.reduce_axis((0, k), f"k{i}") for i, k in enumerate(p.kernel)]
        rc = te.reduce_axis((0, cblocks), "rc")
        ri = te.reduce_axis((0, rb), "ri")

        def body(n, ob, *rest):
            *o, oi = rest
            w = args.weight[(ob // t, *ks, rc, ri, (ob % t) * vb + oi)]
            return te.sum(patch[(n, *o, *ks, rc, ri)] * w, axis=[*ks, rc, ri])

        acc = te.compute((p.batch, p.out_channels // vb, *p.out_size, vb), body, name="acc")
        out = stages.output(p, args, stages.acc_reader(acc, vb))
        sch = s_tir.Schedule(te.create_prim_func(args.signature(out)))
        block = sch.get_sblock("acc")
        loops = sch.get_loops(block)
        n, ob, o, oi = loops[0], loops[1], loops[2:2 + n_sp], loops[2 + n_sp]
        reduction = loops[3 + n_sp:]
        ob_o, ob_i = sch.split(ob, [None, t])
        last_o, rows, last_i = sch.split(o[-1], [None, config.row_tiles, config.reg_n])
        sch.reorder(n, *o[:-1], last_o, ob_o, rows, *reduction, last_i, ob_i, oi)
        fused = sch.fuse(n, *o[:-1], last_o)
        sch.parallel(fused)
        sch.set_scope(block, 0, "local")
        sch.reverse_compute_at(sch.get_sblock("out"), rows)
        sch.compute_at(sch.get_sblock("patch"), fused)
        sch.unroll(last_i)
        sch.unroll(ob_i)
        sch.vectorize(oi)
        sch.decompose_reduction(block, reduction[0])
        sch.vectorize(sch.get_loops(sch.get_sblock("out"))[-1])
        sch.vectorize(sch.get_loops(sch.get_sblock("patch"))[-1])
        return KernelBuild(mark_scheduled(sch.mod["main"]), _packer(tile, rb))


def _packer(tile: int, rb: int):
    def pack(w: np.ndarray, bias):
        m, c, *kernel = w.shape
        n = len(kernel)
        x = w.reshape(m // tile, tile, c // rb, rb, *kernel)
        return np.ascontiguousarray(x.transpose(0, *range(4, 4 + n), 2, 3, 1)), bias
    return pack


IM2COL = Im2col()

"""``depthwise``: one filter per channel, vectorised over the channel block.

``acc[n, cb, *o, ci] = sum_k x[n, cb, o*s + k*d, ci] * W[cb, *k, ci]``: each tap is a vector
load and an FMA (no broadcast, no reduction over channels); ``reg_n`` output positions
of the last axis form the register tile, the taps are unrolled. The parallel loop runs
over (batch, channel block, output rows but the last axis). The taps read the input itself,
the zero border being an in-bounds condition (``stages.read_unpadded``): copying the rows
each output row reads into a padded buffer first (three input rows per output row of a 3x3
window) made this memory-bound kernel 1.4-1.8x slower (2 threads, MobileNetV2's depthwise
layers alone: 32 x 112 x 112, 0.088 vs 0.048 ms; 144 x 56 x 56, 0.106 vs 0.067 ms).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import s_tir, te

from convc.schedules.cpu.blocked import stages
from convc.schedules.cpu.blocked.kernel import Kernel, KernelBuild, mark_scheduled
from convc.schedules.cpu.blocked.layout import Channel
from convc.schedules.cpu.blocked.machine import Machine
from convc.schedules.cpu.blocked.problem import ConvProblem
from convc.schedules.cpu.blocked.tiled import best_reg_n


@dataclass(frozen=True)
class DepthwiseConfig:
    """Output positions of the last axis per register tile."""

    reg_n: int


class Depthwise(Kernel):
    name = "depthwise"
    efficiency = 0.35  # one load per FMA: bound by loads, not FMAs

    def _decline(self, p: ConvProblem) -> str | None:
        if not (p.groups == p.in_channels == p.out_channels):
            return f"not depthwise (groups {p.groups}, channels {p.in_channels}->{p.out_channels})"
        if not p.in_block or p.in_block != p.out_block:
            return f"needs the same blocked layout in and out (blocks {p.in_block}, {p.out_block})"
        return None

    def _default_config(self, p: ConvProblem, machine: Machine) -> DepthwiseConfig:
        return DepthwiseConfig(best_reg_n(p.out_size[-1], 8))

    def _space(self, p: ConvProblem, machine: Machine) -> list[DepthwiseConfig]:
        default = self._default_config(p, machine)
        return [default] + [DepthwiseConfig(r) for r in range(1, 15) if r != default.reg_n]

    def _utilisation(self, p: ConvProblem, config: DepthwiseConfig, machine: Machine) -> float:
        return min(1.0, p.out_block / machine.lanes)


    def build(self, p: ConvProblem, config: DepthwiseConfig) -> KernelBuild:
        b = p.out_block
        args = stages.placeholders(p, (p.out_channels // b, *p.kernel, b))
        ks = [te.reduce_axis((0, k), f"k{i}") for i, k in enumerate(p.kernel)]

        def body(n, cb, *rest):
            *o, ci = rest
            x = stages.read_unpadded(p, args.data, n, Channel(cb, ci, b), stages.window(p, o, ks))
            return te.sum(x * args.weight[(cb, *ks, ci)], axis=ks)

        acc = te.compute((p.batch, p.out_channels // b, *p.out_size, b), body, name="acc")
        out = stages.output(p, args, stages.acc_reader(acc, b))
        sch = s_tir.Schedule(te.create_prim_func(args.signature(out)))
        block = sch.get_sblock("acc")
        loops = sch.get_loops(block)
        n_sp = p.ndim
        n, cb, o, ci, r_k = loops[0], loops[1], loops[2:2 + n_sp], loops[2 + n_sp], loops[3 + n_sp:]
        last_o, last_i = sch.split(o[-1], [None, config.reg_n])
        sch.reorder(n, cb, *o[:-1], last_o, *r_k, last_i, ci)
        fused = sch.fuse(n, cb, *o[:-1])
        sch.parallel(fused)
        sch.set_scope(block, 0, "local")
        sch.reverse_compute_at(sch.get_sblock("out"), last_o)
        for loop in r_k:
            sch.unroll(loop)
        sch.unroll(last_i)
        sch.vectorize(ci)
        sch.decompose_reduction(block, r_k[0])
        sch.vectorize(sch.get_loops(sch.get_sblock("out"))[-1])
        return KernelBuild(mark_scheduled(sch.mod["main"]), _packer(b))


def _packer(block: int):
    def pack(w: np.ndarray, bias):
        m, _, *kernel = w.shape
        x = w.reshape(m // block, block, *kernel)
        return np.ascontiguousarray(np.moveaxis(x, 1, -1)), bias
    return pack


DEPTHWISE = Depthwise()

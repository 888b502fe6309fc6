"""``narrow``: convs with few output channels (image heads: 1-3 channels, odd counts).

With fewer output channels than a vector, vectorising over them wastes most lanes. This
kernel vectorises over the input-channel block instead: each lane accumulates a partial
sum over the blocks and taps for every (output channel, position) of a register tile, and
the lanes are summed once per output at the end:
``part[n, m, *o, ci] = sum_{cb, *k} x[n, cb, o*s + k*d, ci] * W[m, cb, *k, ci]``,
``acc[n, m, *o] = sum_ci part[n, m, *o, ci]``. Needs a blocked input; writes any layout.
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

MAX_CHANNELS = 8  # every output channel of a tile is unrolled


@dataclass(frozen=True)
class NarrowConfig:
    """Output positions per register tile (each holds ``out_channels`` vector accumulators)."""

    reg_n: int


class Narrow(Kernel):
    name = "narrow"
    efficiency = 0.6

    def _decline(self, p: ConvProblem) -> str | None:
        if p.groups != 1:
            return f"groups={p.groups}"
        if not p.in_block:
            return "needs a blocked input (its lanes run over input channels)"
        if p.out_channels > MAX_CHANNELS:
            return f"{p.out_channels} output channels: more than {MAX_CHANNELS}"
        return None

    def _positions(self, p: ConvProblem, machine: Machine) -> list[int]:
        limit = max(1, (machine.registers - 2 - p.out_channels) // p.out_channels)
        width = p.out_size[-1]
        return [r for r in range(1, min(limit, width) + 1) if width % r == 0] or [1]

    def _default_config(self, p: ConvProblem, machine: Machine) -> NarrowConfig:
        return NarrowConfig(max(self._positions(p, machine)))

    def _space(self, p: ConvProblem, machine: Machine) -> list[NarrowConfig]:
        default = self._default_config(p, machine)
        return [default] + [NarrowConfig(r) for r in self._positions(p, machine) if r != default.reg_n]

    def _utilisation(self, p: ConvProblem, config: NarrowConfig, machine: Machine) -> float:
        lanes = min(1.0, p.in_block / machine.lanes)
        fmas = p.out_channels * config.reg_n
        cycles = max(machine.fma_latency, fmas / machine.fma_ports,
                     (config.reg_n + p.out_channels) / machine.load_ports) + machine.step_overhead
        return lanes * fmas / machine.fma_ports / cycles

    def build(self, p: ConvProblem, config: NarrowConfig) -> KernelBuild:
        rb, n_sp = p.in_block, p.ndim
        args = stages.placeholders(p, (p.out_channels, p.in_channels // rb, *p.kernel, rb))
        padded = stages.pad_stage(p, args.data)
        cb = te.reduce_axis((0, p.in_channels // rb), "cb")
        ks = [te.reduce_axis((0, k), f"k{i}") for i, k in enumerate(p.kernel)]

        def partial(n, m, *rest):
            *o, ci = rest
            x = stages.read(p, padded, n, Channel(cb, ci, rb), stages.window(p, o, ks))
            return te.sum(x * args.weight[(m, cb, *ks, ci)], axis=[cb, *ks])

        part = te.compute((p.batch, p.out_channels, *p.out_size, rb), partial, name="part")
        lane = te.reduce_axis((0, rb), "lane")
        acc = te.compute((p.batch, p.out_channels, *p.out_size),
                         lambda n, m, *o: te.sum(part[(n, m, *o, lane)], axis=lane), name="acc")
        out = stages.output(p, args, lambda n, channel, spatial: acc[(n, channel.logical, *spatial)])
        sch = s_tir.Schedule(te.create_prim_func(args.signature(out)))
        block = sch.get_sblock("part")
        loops = sch.get_loops(block)
        n, m, o, ci = loops[0], loops[1], loops[2:2 + n_sp], loops[2 + n_sp]
        r_cb, r_k = loops[3 + n_sp], loops[4 + n_sp:]
        last_o, last_i = sch.split(o[-1], [None, config.reg_n])
        outer = [n, *o[:-1], last_o]
        sch.reorder(*outer, r_cb, *r_k, m, last_i, ci)
        fused = sch.fuse(*outer)
        sch.parallel(fused)
        sch.set_scope(block, 0, "local")
        sch.reverse_compute_at(sch.get_sblock("acc"), fused)
        sch.reverse_compute_at(sch.get_sblock("out"), fused)
        sch.unroll(m)
        sch.unroll(last_i)
        sch.vectorize(ci)
        sch.decompose_reduction(block, r_cb)
        if p.padded:
            stages.schedule_copy(sch, "pad")
        return KernelBuild(mark_scheduled(sch.mod["main"]), _packer(rb))


def _packer(rb: int):
    def pack(w: np.ndarray, bias):
        m, c, *kernel = w.shape
        x = w.reshape(m, c // rb, rb, *kernel)
        order = (0, 1, *range(3, 3 + len(kernel)), 2)
        return np.ascontiguousarray(x.transpose(order)), bias
    return pack


NARROW = Narrow()

"""``generic``: any conv in any layout, scalar per output element: the fallback.

Serves what the vectorised kernels decline: groups with few channels each, channel
counts that fill no vector block, layouts whose blocks do not divide a group. The
weight stays in the ONNX layout; the input is read through the padding stage.
"""
from __future__ import annotations

from dataclasses import dataclass

from tvm import s_tir, te

from convc.schedules.cpu.blocked import stages
from convc.schedules.cpu.blocked.kernel import Kernel, KernelBuild, mark_scheduled
from convc.schedules.cpu.blocked.layout import Channel
from convc.schedules.cpu.blocked.machine import Machine
from convc.schedules.cpu.blocked.problem import ConvProblem
from convc.schedules.cpu.blocked.tiled import pad_bytes


@dataclass(frozen=True)
class GenericConfig:
    """The generic kernel has no knobs."""


class Generic(Kernel):
    name = "generic"
    efficiency = 0.04

    def _decline(self, p: ConvProblem) -> str | None:
        return None

    def _default_config(self, p: ConvProblem, machine: Machine) -> GenericConfig:
        return GenericConfig()

    def _space(self, p: ConvProblem, machine: Machine) -> list[GenericConfig]:
        return [GenericConfig()]

    def _extra_bytes(self, p: ConvProblem, config: GenericConfig, machine: Machine) -> float:
        return pad_bytes(p)

    def build(self, p: ConvProblem, config: GenericConfig) -> KernelBuild:
        args = stages.placeholders(p, p.weight_shape)
        padded = stages.pad_stage(p, args.data)
        cpg, mpg = p.in_per_group, p.out_per_group
        r = te.reduce_axis((0, cpg), "r")
        ks = [te.reduce_axis((0, k), f"k{i}") for i, k in enumerate(p.kernel)]

        def body(n, m, *o):
            c = Channel((m // mpg) * cpg + r)
            x = stages.read(p, padded, n, c, stages.window(p, o, ks))
            return te.sum(x * args.weight[(m, r, *ks)], axis=[r, *ks])

        acc = te.compute(p.out_shape, body, name="acc")
        out = stages.output(p, args, lambda n, channel, spatial: acc[(n, channel.logical, *spatial)])
        sch = s_tir.Schedule(te.create_prim_func(args.signature(out)))
        block = sch.get_sblock("acc")
        loops = sch.get_loops(block)
        fused = sch.fuse(*loops[:2 + p.ndim - 1])
        sch.parallel(fused)
        sch.set_scope(block, 0, "local")
        sch.reverse_compute_at(sch.get_sblock("out"), fused)
        if p.padded:
            stages.schedule_copy(sch, "pad")
        return KernelBuild(mark_scheduled(sch.mod["main"]), lambda w, bias: (w, bias))


GENERIC = Generic()

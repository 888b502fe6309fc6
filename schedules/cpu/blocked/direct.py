"""``direct``: the blocked direct convolution (no copy besides the zero border).

Register tile of output positions x output-channel vectors, reduction over input-channel
blocks and kernel taps, one broadcast input scalar feeding one FMA per channel vector. Serves any
kernel, stride, dilation, padding and groups whose channels per group fill whole blocks.
"""
from __future__ import annotations

from convc.schedules.cpu.blocked import tiled
from convc.schedules.cpu.blocked.machine import Machine
from convc.schedules.cpu.blocked.problem import ConvProblem
from convc.schedules.cpu.blocked.tiled import TileConfig


class Direct(tiled.TiledKernel):
    name = "direct"
    efficiency = 0.85

    def _extra_bytes(self, p: ConvProblem, config: TileConfig, machine: Machine) -> float:
        return tiled.pad_bytes(p)


DIRECT = Direct()

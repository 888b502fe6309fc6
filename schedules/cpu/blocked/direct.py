"""``direct``: the blocked direct convolution (no copy besides the zero border).

Register tile of output positions x output-channel vectors, reduction over input-channel
blocks and kernel taps, one broadcast input scalar feeding ``oc_tile/8`` FMAs. Serves any
kernel, stride, dilation, padding and groups whose channels per group fill whole blocks.
"""
from __future__ import annotations

from convc.schedules.cpu.blocked import tiled
from convc.schedules.cpu.blocked.kernel import Kernel, KernelBuild
from convc.schedules.cpu.blocked.problem import ConvProblem
from convc.schedules.cpu.blocked.tiled import TileConfig


class Direct(Kernel):
    name = "direct"
    efficiency = 0.85

    def _decline(self, p: ConvProblem) -> str | None:
        return tiled.tiled_decline(p)

    def default_config(self, p: ConvProblem) -> TileConfig:
        return tiled.tile_config(p, 16)

    def space(self, p: ConvProblem) -> list[TileConfig]:
        return tiled.tile_space(p, self.default_config(p))

    def build(self, p: ConvProblem, config: TileConfig) -> KernelBuild:
        return tiled.build_tiled(p, config)

    def _utilisation(self, p: ConvProblem, config: TileConfig) -> float:
        return tiled.utilisation(p, config)

    def _extra_bytes(self, p: ConvProblem, config: TileConfig) -> float:
        return tiled.pad_bytes(p)


DIRECT = Direct()

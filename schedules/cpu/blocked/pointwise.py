"""``1x1``: a pointwise conv as a GEMM over channels, with no padding or patch copy.

Output positions are the GEMM's rows, output channels its columns and input channels
its reduction; strides just skip rows. The register tile favours wide channel tiles,
since a 1x1 conv has no kernel taps to reuse an input scalar across.
"""
from __future__ import annotations

from convc.schedules.cpu.blocked import tiled
from convc.schedules.cpu.blocked.problem import ConvProblem


class Pointwise(tiled.TiledKernel):
    name = "1x1"
    efficiency = 0.88

    def _decline(self, p: ConvProblem) -> str | None:
        return p.not_pointwise() or tiled.tiled_decline(p)


POINTWISE = Pointwise()

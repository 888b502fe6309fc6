"""The implicit GEMM: any conv (N-d, strided, dilated, padded, grouped) as ``gemm``'s tiled GEMM,
its patch tiles gathered from the input with the padding predicate."""
from __future__ import annotations

from convc.schedules.cpu.blocked.problem import ConvProblem
from convc.schedules.cuda.conv.gemm import GemmKernel
from convc.schedules.cuda.conv.stages import patch_read


class ImplicitGemm(GemmKernel):
    name = "implicit_gemm"

    def _decline(self, p: ConvProblem) -> str | None:
        return None

    def _patch(self, p: ConvProblem, data, n, g, k, q, inside):
        return patch_read(p, data, n, g, k, q, inside)


IMPLICIT_GEMM = ImplicitGemm()

"""1x1 convs as ``gemm``'s tiled GEMM: the patch is the input itself (strided: every s-th
position), so a tile is a plain copy, with vector loads when rows are contiguous and aligned."""
from __future__ import annotations

from tvm import tirx

from convc.schedules.cpu.blocked.problem import ConvProblem
from convc.schedules.cuda.conv.gemm import GemmConfig, GemmKernel
from convc.schedules.cuda.conv.stages import out_positions, unravel


class Pointwise(GemmKernel):
    name = "1x1"
    gather_ops = 4.0

    def _decline(self, p: ConvProblem) -> str | None:
        return p.not_pointwise()

    def _patch(self, p: ConvProblem, data, n, g, k, q, inside):
        position = [o * s for o, s in zip(unravel(q, p.out_size), p.strides)]
        value = data[(n, g * p.in_per_group + k, *position)]
        return value if inside is None else tirx.if_then_else(inside, value, tirx.const(0.0, p.dtype))

    def _patch_vector(self, p: ConvProblem, c: GemmConfig) -> int:
        """4 or 2 lanes when the patch tile is whole rows of contiguous, aligned input (stride
        1, no tile padding); 1 otherwise."""
        positions = out_positions(p)
        contiguous = all(s == 1 for s in p.strides)
        whole = positions % c.block_n == 0 and self.depth(p) % c.block_k == 0
        if not (contiguous and whole):
            return 1
        per_thread = c.block_k * c.block_n // c.threads
        return next(v for v in (4, 2, 1) if positions % v == 0 and per_thread % v == 0)


POINTWISE = Pointwise()

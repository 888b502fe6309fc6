"""The tiled GEMM shared by ``implicit_gemm`` and ``1x1``: conv as one GEMM per (image, group).

Per image ``n`` and group ``g``: ``acc[m, q] = sum_k W[g, k, m] * patch[n, g, k, q]`` with
``m`` an output channel of the group (M = M/g), ``q`` an output position (P = prod O, row
major) and ``k`` over ``C/g * taps`` (channel major, then the taps). The patch matrix is
never materialised: each thread block computes its (block_k x block_n) patch tile straight
from the global input (the subclass's ``_patch``, zero in the padding) into shared memory,
next to the (block_k x block_m) weight tile; each thread keeps a (thread_m x thread_n)
register tile of accumulators, reads its operands from shared memory with vector loads,
and applies bias and epilogue to the register tile, so the output is written once.

Packed weight: ``(G, Kp, Mp)`` float32 (k-major, then output channel), zero-padded to tile
multiples, so weight tiles load with aligned vector loads and the inner loop has no
bounds checks (padded positions and channels are dropped by the epilogue's guard).
"""
from __future__ import annotations

import abc
import dataclasses
import math
from dataclasses import dataclass

from tvm import s_tir, te

from convc.schedules.cpu.blocked.problem import ConvProblem
from convc.schedules.cuda.conv.kernel import ComputeThenSchedule, Gpu, KernelBuild, Launch, element_bytes
from convc.schedules.cuda.conv.stages import (ACC, EPILOGUE, PATCH, ceil_to, gemm_compute, loops_below,
                                              out_positions)

L2_MISS = 0.25  # fraction of re-read tiles that miss L2 and come from DRAM


@dataclass(frozen=True)
class GemmConfig:
    """Tiles of the GEMM: a block computes block_m channels x block_n positions with
    (block_m/thread_m) x (block_n/thread_n) threads, staging block_k of the reduction per
    step; ``vector`` lanes per global weight load (1, 2 or 4); ``stages`` 2 double-buffers
    the shared tiles (the next step's tiles load while this one's are multiplied)."""

    block_m: int = 64
    block_n: int = 64
    block_k: int = 8
    thread_m: int = 4
    thread_n: int = 4
    vector: int = 4
    stages: int = 1

    @property
    def threads(self) -> int:
        return (self.block_m // self.thread_m) * (self.block_n // self.thread_n)

    @property
    def smem_bytes(self) -> int:
        return 4 * self.block_k * (self.block_m + self.block_n) * self.stages

    def valid(self, gpu: Gpu) -> bool:
        """Fits the static shared memory and thread limits; weight tiles split evenly into vectors."""
        return (self.block_m % self.thread_m == 0 and self.block_n % self.thread_n == 0
                and 32 <= self.threads <= gpu.threads_per_block and self.smem_bytes <= gpu.smem_per_block
                and (self.block_k * self.block_m) % (self.threads * self.vector) == 0)


# (block_m, block_n, block_k, thread_m, thread_n): large to small tiles
_TILES = ((128, 64, 8, 8, 4), (64, 64, 8, 4, 4), (64, 32, 8, 4, 2), (32, 64, 8, 2, 4),
          (32, 32, 8, 2, 2), (16, 64, 16, 2, 2), (16, 32, 16, 1, 2), (8, 64, 16, 1, 2))


class GemmKernel(ComputeThenSchedule):
    """A conv computed as the tiled GEMM above; subclasses read the patch."""
    dtypes = ("float32", "float16")  # float16 data and weights, float32 accumulation

    gather_ops: float = 12.0  # integer ops to compute one patch element's address and predicate

    @abc.abstractmethod
    def _patch(self, p: ConvProblem, data: te.Tensor, n, g, k, q, inside):
        """The patch element (reduction index ``k``, output position ``q``) of image ``n``,
        group ``g``; zero where ``inside`` (a bounds condition or None) is false."""

    def _patch_vector(self, p: ConvProblem, config: GemmConfig) -> int:
        """Lanes of the global loads filling the patch tile (1: gathered element by element)."""
        return 1

    @staticmethod
    def depth(p: ConvProblem) -> int:
        """The GEMM's reduction length K = C/g * taps."""
        return p.in_per_group * p.taps

    # -- knobs -------------------------------------------------------------------
    def _candidates(self, p: ConvProblem, gpu: Gpu) -> list[GemmConfig]:
        configs = []
        for bm, bn, bk, tm, tn in _TILES:
            for vector in (4, 2, 1):
                config = GemmConfig(bm, bn, bk, tm, tn, vector)
                if config.valid(gpu):
                    configs.append(config)
                    break
        return configs

    def _default_config(self, p: ConvProblem, gpu: Gpu) -> GemmConfig:
        return min(self._candidates(p, gpu), key=lambda c: self.estimate(p, c, gpu))

    def _space(self, p: ConvProblem, gpu: Gpu) -> list[GemmConfig]:
        single = self._candidates(p, gpu)
        double = [dataclasses.replace(c, stages=2) for c in single]
        return single + [c for c in double if c.valid(gpu)]

    # -- cost --------------------------------------------------------------------
    def _launch(self, p: ConvProblem, c: GemmConfig) -> Launch:
        blocks = p.batch * p.groups * math.ceil(p.out_per_group / c.block_m) * math.ceil(out_positions(p) / c.block_n)
        registers = c.thread_m * c.thread_n + c.thread_m + c.thread_n + 24
        return Launch(blocks, c.threads, c.smem_bytes, registers)

    def _efficiency(self, p: ConvProblem, c: GemmConfig, gpu: Gpu) -> float:
        """Register-tile intensity (FMAs per shared-memory operand), the patch gather's
        integer work per FMA, and the work wasted on tile padding."""
        intensity = c.thread_m * c.thread_n / (c.thread_m + c.thread_n)
        inner = 0.8 * intensity / (intensity + 0.5)
        gather = 1 + self.gather_ops / (self._patch_vector(p, c) * c.block_m)
        k = self.depth(p)
        useful = (p.out_per_group * out_positions(p) * k) / (
            ceil_to(p.out_per_group, c.block_m) * ceil_to(out_positions(p), c.block_n) * ceil_to(k, c.block_k))
        return inner / gather * useful

    def _traffic(self, p: ConvProblem, c: GemmConfig) -> float:
        m_tiles = math.ceil(p.out_per_group / c.block_m)
        n_tiles = p.batch * math.ceil(out_positions(p) / c.block_n)
        size = element_bytes(p)
        rereads = (m_tiles - 1) * math.prod(p.in_shape) + (n_tiles - 1) * math.prod(p.weight_shape)
        return super()._traffic(p, c) + L2_MISS * size * rereads

    # -- build -------------------------------------------------------------------
    def compute(self, p: ConvProblem, c: GemmConfig) -> KernelBuild:
        sch, pack = gemm_compute(p, (c.block_m, c.block_k, c.block_n),
                                 lambda data, n, g, k, q, inside: self._patch(p, data, n, g, k, q, inside))
        return KernelBuild(sch.mod["main"], pack)

    def _schedule(self, sch: s_tir.Schedule, p: ConvProblem, c: GemmConfig) -> None:
        _schedule(sch, c, self._patch_vector(p, c))


def _schedule(sch: s_tir.Schedule, c: GemmConfig, patch_vector: int) -> None:
    """Block tiles over (image, group, channels) x positions, shared-memory operand tiles per
    ``block_k`` step, register tiles with vector loads from shared memory, epilogue at the
    register tile."""
    acc = sch.get_sblock(ACC)
    n, g, m, q, k = sch.get_loops(acc)
    bm, ty, tm = sch.split(m, [None, c.block_m // c.thread_m, c.thread_m])
    bn, tx, tn = sch.split(q, [None, c.block_n // c.thread_n, c.thread_n])
    ko, ki = sch.split(k, [None, c.block_k])
    sch.reorder(n, g, bm, bn, ty, tx, ko, ki, tm, tn)
    sch.bind(sch.fuse(n, g, bm, bn), "blockIdx.x")  # x: up to 2^31 - 1 blocks
    sch.bind(ty, "threadIdx.y")
    sch.bind(tx, "threadIdx.x")
    sch.set_scope(acc, 0, "local")
    sch.reverse_compute_at(sch.get_sblock(EPILOGUE), tx)
    weight_tile = sch.cache_read(acc, 0, "shared")
    patch_tile = sch.get_sblock(PATCH)
    sch.set_scope(patch_tile, 0, "shared")
    for tile, vector in ((weight_tile, c.vector), (patch_tile, patch_vector)):
        sch.compute_at(tile, ko)
        _cooperative_fetch(sch, tile, c, vector, ko)
    for operand, lanes in ((0, c.thread_m), (1, c.thread_n)):
        registers = sch.cache_read(acc, operand, "local")
        sch.compute_at(registers, ki)
        if lanes > 1:
            sch.vectorize(sch.get_loops(registers)[-1])
    for loop in (ki, tm, tn):
        sch.unroll(loop)
    if c.stages == 2 and int(sch.get(ko).extent) > 1:  # ko's children: 2 tile copies, the multiply
        sch.annotate(ko, "software_pipeline_stage", [0, 0, 1])
        sch.annotate(ko, "software_pipeline_order", [0, 1, 2])
    sch.decompose_reduction(acc, ko)


def _cooperative_fetch(sch: s_tir.Schedule, block, c: GemmConfig, vector: int, anchor) -> None:
    """All threads of the block copy the tile of ``block`` (its loops below ``anchor``),
    ``vector`` consecutive elements per thread and step."""
    fused = sch.fuse(*loops_below(sch, block, anchor))
    _, ty, tx, lanes = sch.split(fused, [None, c.block_m // c.thread_m, c.block_n // c.thread_n, vector])
    sch.bind(ty, "threadIdx.y")
    sch.bind(tx, "threadIdx.x")
    if vector > 1:
        sch.vectorize(lanes)

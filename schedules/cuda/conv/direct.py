"""The direct kernel, the fallback for every conv: threads over output positions, each
computing ``thread_m`` output channels of one position, looping over channels and taps.

Suited where a GEMM tiles poorly: very few output channels (the last conv of a U-Net or a
DCGAN, 1-3 channels) or a tiny reduction. The block's weight slice (thread_m channels x
block_k of the reduction) is staged in shared memory, where every thread reads the same
word (a broadcast); each thread gathers its input element once per reduction step into a
register and feeds its ``thread_m`` accumulators. Packed weight as in ``gemm``: ``(G, Kp, Mp)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from tvm import s_tir

from convc.schedules.cpu.blocked.problem import ConvProblem
from convc.schedules.cuda.conv.kernel import ComputeThenSchedule, Gpu, KernelBuild, Launch, element_bytes
from convc.schedules.cuda.conv.stages import (ACC, EPILOGUE, PATCH, ceil_to, gemm_compute, loops_below,
                                              out_positions, patch_read)

L2_MISS = 0.25


@dataclass(frozen=True)
class DirectConfig:
    """``threads`` output positions per block, ``thread_m`` channels per thread (and block),
    ``block_k`` reduction steps staged in shared memory at a time."""

    threads: int = 128
    thread_m: int = 4
    block_k: int = 32

    @property
    def smem_bytes(self) -> int:
        return 4 * self.block_k * self.thread_m


class Direct(ComputeThenSchedule):
    name = "direct"
    dtypes = ("float32", "float16")  # float16 data and weights, float32 accumulation

    def _decline(self, p: ConvProblem) -> str | None:
        return None

    @staticmethod
    def _depth(p: ConvProblem) -> int:
        return p.in_per_group * p.taps

    def _candidates(self, p: ConvProblem, gpu: Gpu) -> list[DirectConfig]:
        block_k = min(32, ceil_to(self._depth(p), 8))
        return [DirectConfig(threads, thread_m, block_k) for thread_m in (1, 2, 4, 8)
                for threads in (64, 128, 256)]

    def _default_config(self, p: ConvProblem, gpu: Gpu) -> DirectConfig:
        return min(self._candidates(p, gpu), key=lambda c: self.estimate(p, c, gpu))

    def _space(self, p: ConvProblem, gpu: Gpu) -> list[DirectConfig]:
        return self._candidates(p, gpu)

    def _launch(self, p: ConvProblem, c: DirectConfig) -> Launch:
        blocks = p.batch * p.groups * math.ceil(p.out_per_group / c.thread_m) * math.ceil(out_positions(p) / c.threads)
        return Launch(blocks, c.threads, c.smem_bytes, registers=2 * c.thread_m + 24)

    def _efficiency(self, p: ConvProblem, c: DirectConfig, gpu: Gpu) -> float:
        """thread_m FMAs per gathered input element (about 6 FMAs' worth of address math),
        less the channels and positions padded to tiles."""
        useful = p.out_per_group * out_positions(p) / (
            ceil_to(p.out_per_group, c.thread_m) * ceil_to(out_positions(p), c.threads))
        return 0.5 * c.thread_m / (c.thread_m + 6) * useful

    def _traffic(self, p: ConvProblem, c: DirectConfig) -> float:
        m_tiles = math.ceil(p.out_per_group / c.thread_m)
        return super()._traffic(p, c) + L2_MISS * element_bytes(p) * (m_tiles - 1) * math.prod(p.in_shape)

    def compute(self, p: ConvProblem, c: DirectConfig) -> KernelBuild:
        sch, pack = gemm_compute(p, (c.thread_m, c.block_k, c.threads),
                                 lambda data, n, g, k, q, inside: patch_read(p, data, n, g, k, q, inside))
        return KernelBuild(sch.mod["main"], pack)

    def _schedule(self, sch: s_tir.Schedule, p: ConvProblem, c: DirectConfig) -> None:
        _schedule(sch, c)


def _schedule(sch: s_tir.Schedule, c: DirectConfig) -> None:
    acc = sch.get_sblock(ACC)
    n, g, m, q, k = sch.get_loops(acc)
    bm, tm = sch.split(m, [None, c.thread_m])
    bq, tx = sch.split(q, [None, c.threads])
    ko, ki = sch.split(k, [None, c.block_k])
    sch.reorder(n, g, bm, bq, tx, ko, ki, tm)
    sch.bind(sch.fuse(n, g, bm, bq), "blockIdx.x")  # x: up to 2^31 - 1 blocks
    sch.bind(tx, "threadIdx.x")
    sch.set_scope(acc, 0, "local")
    sch.reverse_compute_at(sch.get_sblock(EPILOGUE), tx)
    weights = sch.cache_read(acc, 0, "shared")
    sch.compute_at(weights, ko)
    fused = sch.fuse(*loops_below(sch, weights, ko))
    _, threads = sch.split(fused, [None, c.threads])
    sch.bind(threads, "threadIdx.x")
    patch = sch.get_sblock(PATCH)
    sch.set_scope(patch, 0, "local")
    sch.compute_at(patch, ki)
    sch.unroll(tm)
    sch.decompose_reduction(acc, ko)
DIRECT = Direct()

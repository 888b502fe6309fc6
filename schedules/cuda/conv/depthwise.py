"""Depthwise convs (groups == in_channels, any channel multiplier): memory-bound, so the
kernel is about coalesced loads and reuse of each input element across the taps.

A block computes one (image, output channel) and a tile of the last two output axes
(the last one only in 1-D; leading axes of a 3-D conv go to the grid). Each thread holds a
(vector_h x vector_w) register tile of outputs and the channel's taps in registers; with
``stage`` the block first copies its input window (tile plus halo, zero in the padding)
into shared memory with consecutive threads on consecutive columns, so each input element
is read from DRAM once per block instead of once per tap. Packed weight: ``(M, taps)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from tvm import s_tir, te

from convc.lower.conv import pad_spatial
from convc.schedules.cpu.blocked.problem import ConvProblem
from convc.schedules.cuda.conv.kernel import ComputeThenSchedule, Gpu, KernelBuild, Launch, element_bytes
from convc.schedules.cuda.conv.stages import (ACC, EPILOGUE, epilogue, flat, inputs, loops_below, multiply_add,
                                              prim_func)

PAD = "pad"


@dataclass(frozen=True)
class DepthwiseConfig:
    """Threads (threads_h x threads_w) per block, outputs per thread (vector_h x vector_w),
    and whether the block's input window is staged in shared memory."""

    threads_h: int = 8
    threads_w: int = 32
    vector_h: int = 1
    vector_w: int = 1
    stage: bool = True

    @property
    def threads(self) -> int:
        return self.threads_h * self.threads_w

    def window(self, p: ConvProblem) -> tuple[int, int]:
        """Input rows x columns one block reads (its output tile with the halo)."""
        def extent(tile, axis):
            return (tile - 1) * p.strides[axis] + (p.kernel[axis] - 1) * p.dilations[axis] + 1
        columns = extent(self.threads_w * self.vector_w, -1)
        rows = extent(self.threads_h * self.vector_h, -2) if p.ndim > 1 else 1
        return rows, columns


class Depthwise(ComputeThenSchedule):
    name = "depthwise"
    dtypes = ("float32", "float16")  # float16 data and weights, float32 accumulation

    def _decline(self, p: ConvProblem) -> str | None:
        if p.groups != p.in_channels or p.groups == 1:
            return f"groups {p.groups} != in_channels {p.in_channels} (not depthwise)"
        return None

    def _tile(self, p: ConvProblem) -> tuple[int, int]:
        """Output rows and columns of the tiled axes (rows 1 in 1-D)."""
        return (p.out_size[-2] if p.ndim > 1 else 1), p.out_size[-1]

    def _candidates(self, p: ConvProblem, gpu: Gpu) -> list[DepthwiseConfig]:
        rows, columns = self._tile(p)
        configs = []
        for threads_w in (32, 16, 8):
            threads_h = max(1, min(256 // threads_w, 1 << (rows - 1).bit_length()))
            for vector_w in (1, 2, 4):
                for stage in (True, False):
                    c = DepthwiseConfig(threads_h, threads_w, 1, vector_w, stage)
                    rows_in, columns_in = c.window(p)
                    if 4 * rows_in * columns_in <= gpu.smem_per_block and c.threads >= 32:
                        configs.append(c)
        return configs

    def _default_config(self, p: ConvProblem, gpu: Gpu) -> DepthwiseConfig:
        return min(self._candidates(p, gpu), key=lambda c: self.estimate(p, c, gpu))

    def _space(self, p: ConvProblem, gpu: Gpu) -> list[DepthwiseConfig]:
        return self._candidates(p, gpu)

    def _blocks(self, p: ConvProblem, c: DepthwiseConfig) -> int:
        rows, columns = self._tile(p)
        leading = math.prod(p.out_size[:-2])
        return (p.batch * p.out_channels * leading * math.ceil(rows / (c.threads_h * c.vector_h))
                * math.ceil(columns / (c.threads_w * c.vector_w)))

    def _launch(self, p: ConvProblem, c: DepthwiseConfig) -> Launch:
        rows_in, columns_in = c.window(p)
        smem = 4 * rows_in * columns_in if c.stage else 0
        return Launch(self._blocks(p, c), c.threads, smem, registers=p.taps + c.vector_h * c.vector_w + 24)

    def _efficiency(self, p: ConvProblem, c: DepthwiseConfig, gpu: Gpu) -> float:
        """One FMA per load: a quarter of the FMA peak from shared memory, an eighth from L1."""
        rows, columns = self._tile(p)
        tile_h, tile_w = c.threads_h * c.vector_h, c.threads_w * c.vector_w
        useful = rows * columns / (math.ceil(rows / tile_h) * tile_h * math.ceil(columns / tile_w) * tile_w)
        return (0.25 if c.stage else 0.125) * useful

    def _traffic(self, p: ConvProblem, c: DepthwiseConfig) -> float:
        """Input windows overlap by the halo (the blocks of one input channel's multiplier
        outputs share theirs through L2); without staging each tap re-reads through L1/L2."""
        rows_in, columns_in = c.window(p)
        multiplier = p.out_channels // p.in_channels
        windows = self._blocks(p, c) * rows_in * columns_in * math.prod(p.kernel[:-2]) / multiplier
        reads = windows if c.stage else max(windows, math.prod(p.in_shape) * min(p.taps, 3))
        size = element_bytes(p)
        return super()._traffic(p, c) + size * max(0, reads - math.prod(p.in_shape))

    def compute(self, p: ConvProblem, c: DepthwiseConfig) -> KernelBuild:
        multiplier = p.out_channels // p.in_channels
        data, weight, bias, operands = inputs(p, (p.out_channels, p.taps))
        padded = pad_spatial(data, p.pads_begin, p.pads_end, 0.0)
        taps = [te.reduce_axis((0, k), name=f"r{i}") for i, k in enumerate(p.kernel)]

        def body(n, m, *o):
            pos = [oi * s + r * d for oi, s, r, d in zip(o, p.strides, taps, p.dilations)]
            tap = weight[m, flat(taps, p.kernel)]
            return te.sum(multiply_add(padded[(n, m // multiplier, *pos)], tap), axis=taps)
        acc = te.compute(p.out_shape, body, name=ACC)
        out = epilogue(p, acc, bias, operands)

        def pack(w: np.ndarray, b: np.ndarray | None):
            packed = np.asarray(w, dtype=p.dtype).reshape(p.out_channels, p.taps)
            return packed, None if b is None else np.asarray(b, dtype=p.dtype).reshape(p.out_channels)
        return KernelBuild(prim_func(data, weight, bias, operands, out), pack)

    def _schedule(self, sch: s_tir.Schedule, p: ConvProblem, c: DepthwiseConfig) -> None:
        _schedule(sch, p, c)


def _schedule(sch: s_tir.Schedule, p: ConvProblem, c: DepthwiseConfig) -> None:
    acc = sch.get_sblock(ACC)
    loops = sch.get_loops(acc)
    n, m, *spatial = loops[:2 + p.ndim]
    taps = loops[2 + p.ndim:]
    bw, tx, vw = sch.split(spatial[-1], [None, c.threads_w, c.vector_w])
    if p.ndim > 1:
        bh, ty, vh = sch.split(spatial[-2], [None, c.threads_h, c.vector_h])
        leading = spatial[:-2]
    else:
        bh = ty = vh = None
        leading = []
    grid = [n, m, *leading, *([bh] if bh is not None else []), bw]
    threads = [t for t in (ty, tx) if t is not None]
    registers = [v for v in (vh, vw) if v is not None]
    sch.reorder(*grid, *threads, *taps, *registers)
    block = sch.fuse(*grid)
    sch.bind(block, "blockIdx.x")
    for loop, axis in zip(threads, ("threadIdx.y", "threadIdx.x")[-len(threads):]):
        sch.bind(loop, axis)
    sch.set_scope(acc, 0, "local")
    sch.reverse_compute_at(sch.get_sblock(EPILOGUE), threads[-1])
    window = sch.get_sblock(PAD) if p.padded else sch.cache_read(acc, 0, "shared")
    if c.stage:
        sch.set_scope(window, 0, "shared")
        sch.compute_at(window, block)
        fused = sch.fuse(*loops_below(sch, window, block))
        _, *lanes = sch.split(fused, [None, *([c.threads_h] if ty is not None else []), c.threads_w])
        for loop, axis in zip(lanes, ("threadIdx.y", "threadIdx.x")[-len(lanes):]):
            sch.bind(loop, axis)
    else:
        sch.compute_inline(window)
    weights = sch.cache_read(acc, 1, "local")
    sch.compute_at(weights, threads[-1])
    for loop in [*taps, *registers]:
        sch.unroll(loop)
    sch.decompose_reduction(acc, taps[0])


DEPTHWISE = Depthwise()

"""``expand_depthwise``: a 1x1 expansion conv and the depthwise conv reading it, in one kernel.

An inverted-residual block (MobileNetV2, EfficientNet) widens its input t-fold with a 1x1
conv and filters the wide tensor with a depthwise conv. Run as two kernels, the wide tensor
(e.g. 96 x 112 x 112 floats, 4.8 MB) is written to memory beyond L2 and read back, and that
traffic, not the arithmetic, is what the two layers cost; where it fits in L2 the two kernels
still write and read it once more, in two parallel regions (fusing every pair of MobileNetV2,
not only those whose wide tensor is 1 MB or more, made it 4-5% faster end to end at 1 and 2
threads). Here the parallel loop runs over
(batch, group of channel blocks of the wide tensor, band of output rows); each iteration
computes the expansion of its channel blocks over the input rows its band reads (plus the halo of the
depthwise window: at most ``kernel - stride`` rows computed twice) into a buffer that stays in
L2, each register tile stored with the expansion's bias and epilogue applied, and runs the
depthwise conv from there. The wide tensor never leaves the core's cache.

The band buffer has no zero border: the depthwise taps read it under an in-bounds condition
(the depthwise padding). A padded buffer needs a pass of its own over the band (a copy with
the zero border, which TVM's schedules cannot fold into the register tile's stores: the border
has no producer); that pass took 16% of the kernel of MobileNetV2's second block, and the
conditional taps made the fused kernels 4-15% faster alone and the model 3-6% faster at 2
threads.

Blocks: ``expand`` (the 1x1 reduction, accumulated in a register tile of ``reg_e`` positions
x ``channel_blocks`` channel blocks, so each input scalar feeds several vectors), its tile's
store to the band buffer (with bias and epilogue), ``acc`` (the depthwise taps, register tile
of ``reg_d`` positions) and ``out`` (the depthwise bias and epilogue). Arguments: data
(``expand.in_block``), expansion weight ``(Ce/b, Cin, b)``, its bias (if any), depthwise
weight ``(Ce/b, *K, b)``, its bias (if any), the output (block ``b``).
"""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, fields
from typing import Callable

import numpy as np
from tvm import s_tir, te, tirx

from convc.schedules.cpu.blocked import stages
from convc.schedules.cpu.blocked.depthwise import DEPTHWISE
from convc.schedules.cpu.blocked.epilogue import epilogue_stage, unsupported_step
from convc.schedules.cpu.blocked.kernel import mark_scheduled
from convc.schedules.cpu.blocked.layout import Channel, load, physical_shape
from convc.schedules.cpu.blocked.machine import Machine
from convc.schedules.cpu.blocked.problem import ConvProblem
from convc.schedules.cpu.blocked.tiled import best_reg_n


@dataclass(frozen=True)
class ExpandDepthwiseConfig:
    """Output rows per band and channel blocks per group (together the parallel chunk; the
    expansion's register tile spans the group's blocks), and the register tiles (positions of
    the last axis) of the expansion and of the depthwise conv."""

    band_rows: int
    reg_e: int
    reg_d: int
    channel_blocks: int = 1


@dataclass(frozen=True)
class PairBuild:
    """A scheduled fused PrimFunc, and ``pack_weight(w_expand, b_expand, w_depthwise,
    b_depthwise)`` giving its weight arguments in order (a bias that is None is no argument)."""

    func: tirx.PrimFunc
    pack_weight: Callable[..., list[np.ndarray]]


@dataclass(frozen=True)
class FusedPair:
    """The expansion conv ``expand`` and the depthwise conv ``depthwise`` reading its output."""

    expand: ConvProblem
    depthwise: ConvProblem


# Bands of one row at stride 1 make TVM 0.27's vectorize refuse the expansion's loop (it
# sees no compact dataflow), so stride-1 bands have at least two rows.
MIN_BAND_ROWS = 2
# expansions reading this many input channels or fewer get register tiles (expansion and
# depthwise) of at most SMALL_EXPANSION_TILE positions (see ExpandDepthwise.default_config)
SMALL_EXPANSION = 32
SMALL_EXPANSION_TILE = 4
# the register-tile widths the tuning space tries (each made the best tail-free width near it)
TILE_WIDTHS = (4, 7, 8, 14)
# channel blocks per register tile the tuning space tries
TILE_CHANNEL_BLOCKS = (1, 2)
# the most expansion work the halo rows of a band may add in the tuning space (0.5: half again)
MAX_HALO = 0.5


class ExpandDepthwise:
    """The fused kernel: when it applies, its knobs, its tuning space, a cost estimate and its
    build (see the module docstring)."""

    name = "expand_depthwise"
    efficiency = 0.6  # fraction of the FMA peak it reaches over both convs (cost model only)

    def decline(self, pair: FusedPair) -> str | None:
        """None when the pair fuses here, else why not."""
        e, d = pair.expand, pair.depthwise
        if e.dtype != "float32" or d.dtype != "float32":
            return "only float32"
        if e.ndim != 2 or d.ndim != 2:
            return "2-D convs only"
        reason = e.not_pointwise() or (None if e.groups == 1 and e.strides == (1, 1)
                                       else "the expansion is grouped or strided")
        if reason:
            return reason
        if e.operand_shapes or d.operand_shapes:
            return "an epilogue with operands (residual adds)"
        reason = unsupported_step(e.epilogue) or unsupported_step(d.epilogue)
        if reason:
            return reason
        if not e.out_block or e.out_block != d.in_block:
            return f"needs the wide tensor blocked (blocks {e.out_block}, {d.in_block})"
        if (d.batch, d.in_channels, d.in_size) != (e.batch, e.out_channels, e.in_size):
            return "the depthwise conv does not read the expansion's output"
        if d.out_size[0] < MIN_BAND_ROWS and d.strides[0] == 1:
            return f"{d.out_size[0]} output row (bands need {MIN_BAND_ROWS} at stride 1)"
        return DEPTHWISE.decline(d)

    def default_config(self, pair: FusedPair, machine: Machine) -> ExpandDepthwiseConfig:
        """One channel block per tile (with the band buffer unpadded, the smaller buffer of one
        block beat tiles of 2 or 3 blocks, whose input scalars feed several vectors, on every
        MobileNetV2 pair: 2 threads, alone, 2-15% faster, most on the 112 x 112 and 56 x 56
        ones); register tiles of at most 4 positions, for the expansion and the depthwise taps,
        when the expansion reads 32 channels or fewer (4-position tiles ran 10-20% faster than
        7- or 8-position ones on MobileNetV2's 16-, 24- and 32-channel pairs, whose wide tensors
        are the largest), else at most 7 and 8, dividing the rows where they can; the longest
        bands of output rows dividing the rows whose band buffer fills at most a quarter of L2
        and that leave 4 parallel chunks per core (halo rows
        are computed twice: in MobileNetV2, 8-row bands ran 5% faster than 4-row ones and
        whole images 40% slower)."""
        e, d = pair.expand, pair.depthwise
        b = e.out_block
        blocks = e.out_channels // b
        vectors = -(-b // machine.lanes)  # per channel block, the tile's only one
        small = e.in_channels <= SMALL_EXPANSION
        widest = SMALL_EXPANSION_TILE if small else 7
        reg_e = best_reg_n(e.in_size[1], min(widest, (machine.registers - 2 - vectors) // vectors))
        reg_d = best_reg_n(d.out_size[1], SMALL_EXPANSION_TILE if small else 8)
        out_rows, stride = d.out_size[0], d.strides[0]
        row_bytes = 4 * b * e.in_size[1]
        chunks = e.batch * blocks
        least = MIN_BAND_ROWS if stride == 1 else 1
        bands = [r for r in range(out_rows, least - 1, -1) if out_rows % r == 0] or [out_rows]
        band = next((r for r in bands if (r * stride + d.kernel[0]) * row_bytes <= machine.l2_bytes // 4
                     and chunks * (out_rows // r) >= 4 * machine.cores), bands[-1])
        return ExpandDepthwiseConfig(band, reg_e, reg_d, channel_blocks=1)

    def space(self, pair: FusedPair, machine: Machine) -> list[ExpandDepthwiseConfig]:
        """Every config worth measuring: bands of output rows dividing the rows whose buffer
        fills at most half of L2, that give every core a chunk and whose halo (none in a band
        of all rows) adds at most ``MAX_HALO`` to the expansion's work, register tiles near each of ``TILE_WIDTHS``
        positions that fit the registers, ``TILE_CHANNEL_BLOCKS`` dividing the wide tensor's
        blocks. The default first, then the configs differing from it in one knob, then in
        two, and so on, nearer values first (returns are largest near the hand-tuned rules)."""
        e, d = pair.expand, pair.depthwise
        default = self.default_config(pair, machine)
        b = e.out_block
        blocks = e.out_channels // b
        vectors = -(-b // machine.lanes)
        out_rows, stride = d.out_size[0], d.strides[0]
        least = MIN_BAND_ROWS if stride == 1 else 1
        row_bytes = 4 * b * e.in_size[1]
        configs = []
        for cbs in (c for c in TILE_CHANNEL_BLOCKS if blocks % c == 0):
            fit = (machine.registers - 2 - cbs * vectors) // (cbs * vectors)
            bands = [r for r in range(least, out_rows + 1) if out_rows % r == 0
                     and cbs * (r * stride + d.kernel[0]) * row_bytes <= machine.l2_bytes // 2
                     and e.batch * blocks // cbs * (out_rows // r) >= machine.cores
                     and (r == out_rows or r * stride + d.kernel[0] - stride <= (1 + MAX_HALO) * r * stride)]
            reg_es = sorted({best_reg_n(e.in_size[1], min(w, fit)) for w in TILE_WIDTHS if fit >= 1})
            reg_ds = sorted({best_reg_n(d.out_size[1], w) for w in TILE_WIDTHS})
            configs += [ExpandDepthwiseConfig(band, reg_e, reg_d, cbs)
                        for band, reg_e, reg_d in itertools.product(bands, reg_es, reg_ds)]

        def distance(config: ExpandDepthwiseConfig) -> tuple[int, float]:
            ratios = [getattr(config, f.name) / getattr(default, f.name) for f in fields(config)]
            return sum(r != 1 for r in ratios), sum(abs(math.log(r)) for r in ratios)
        return [default, *sorted((c for c in configs if c != default), key=distance)]

    def estimate(self, pair: FusedPair, config: ExpandDepthwiseConfig, machine: Machine) -> float:
        """Seconds on ``machine``: both convs' arithmetic at ``efficiency``, the wait for the
        two (cold) weights, one launch. Ranks the task before it is measured."""
        e, d = pair.expand, pair.depthwise
        weight_bytes = 4 * (e.out_channels * e.in_channels + d.out_channels * d.taps)
        return ((e.flops + d.flops) / (machine.peak * self.efficiency) + machine.cold_weight_seconds(weight_bytes)
                + machine.call_overhead)

    def build(self, pair: FusedPair, config: ExpandDepthwiseConfig) -> PairBuild:
        """The scheduled PrimFunc and the packer of its weight arguments."""
        return PairBuild(_schedule(pair, config), functools.partial(_pack, pair.expand.out_block))


def _schedule(pair: FusedPair, cfg: ExpandDepthwiseConfig) -> tirx.PrimFunc:
    if cfg.band_rows < MIN_BAND_ROWS and pair.depthwise.strides[0] == 1:
        raise ValueError(f"{cfg}: bands of a stride-1 depthwise conv need {MIN_BAND_ROWS} rows")
    e, d = pair.expand, pair.depthwise
    b, bi = e.out_block, e.in_block
    data = te.placeholder(physical_shape(e.in_shape, bi), "float32", name="data")
    w_e = te.placeholder((e.out_channels // b, e.in_channels, b), "float32", name="w_expand")
    b_e = te.placeholder((e.out_channels,), "float32", name="b_expand") if e.has_bias else None
    w_d = te.placeholder((d.out_channels // b, *d.kernel, b), "float32", name="w_depthwise")
    b_d = te.placeholder((d.out_channels,), "float32", name="b_depthwise") if d.has_bias else None

    reduce = [te.reduce_axis((0, e.in_channels // bi), "rco"), te.reduce_axis((0, bi), "rci")] if bi else \
        [te.reduce_axis((0, e.in_channels), "rc")]
    channel = Channel(*reduce, bi) if bi else Channel(reduce[0])
    wide = (e.batch, e.out_channels // b, *e.in_size, b)
    expand = te.compute(wide, lambda n, cb, y, x, c: te.sum(
        load(data, bi, n, channel, (y, x)) * w_e[cb, channel.logical, c], axis=reduce), name="expand")
    act = epilogue_stage(wide, b, lambda n, ch, sp: load(expand, b, n, ch, sp), b_e, (), e.epilogue, "float32",
                         name="activated")
    ks = [te.reduce_axis((0, k), f"k{i}") for i, k in enumerate(d.kernel)]

    def taps(n, cb, oy, ox, c):
        value = stages.read_unpadded(d, act, n, Channel(cb, c, b), stages.window(d, (oy, ox), ks))
        return te.sum(value * w_d[cb, ks[0], ks[1], c], axis=ks)
    acc = te.compute((d.batch, d.out_channels // b, *d.out_size, b), taps, name="acc")
    out = epilogue_stage(physical_shape(d.out_shape, b), b, stages.acc_reader(acc, b), b_d, (), d.epilogue,
                         "float32")
    args = [data, w_e, *([b_e] if b_e is not None else []), w_d, *([b_d] if b_d is not None else []), out]
    sch = s_tir.Schedule(te.create_prim_func(args))

    # the depthwise conv: bands of rows parallel, a register tile of reg_d positions
    block = sch.get_sblock("acc")
    n, cb, oy, ox, c, ky, kx = sch.get_loops(block)
    cb_o, cb_i = sch.split(cb, [None, cfg.channel_blocks])
    band, row = sch.split(oy, [None, cfg.band_rows])
    ox_o, ox_i = sch.split(ox, [None, cfg.reg_d])
    sch.reorder(n, cb_o, band, cb_i, row, ox_o, ky, kx, ox_i, c)
    fused = sch.fuse(n, cb_o, band)
    sch.parallel(fused)
    sch.set_scope(block, 0, "local")
    sch.reverse_compute_at(sch.get_sblock("out"), ox_o)
    for loop in (ky, kx, ox_i):
        sch.unroll(loop)
    sch.vectorize(c)
    sch.decompose_reduction(block, ky)
    sch.vectorize(sch.get_loops(sch.get_sblock("out"))[-1])

    # the band's rows of the wide tensor: the 1x1 conv in register tiles, each stored to the
    # band buffer with the expansion's bias and epilogue applied
    block = sch.get_sblock("expand")
    store = sch.cache_write(block, 0, "local")  # the register tile, stored to the band buffer
    sch.reverse_compute_inline(sch.get_sblock("activated"))
    sch.compute_at(store, fused)
    sch.compute_at(block, fused)
    loops = sch.get_loops(block)
    inner = loops[[sch.get(loop) for loop in loops].index(sch.get(fused)) + 1:]  # below the band loop
    reduce = 2 if bi and e.in_channels > bi else 1  # a loop of extent 1 is gone
    *rows, x, c = inner[:-reduce]
    cbs = [rows.pop(0)] if cfg.channel_blocks > 1 else []
    x_o, x_i = sch.split(x, [None, cfg.reg_e])
    sch.reorder(*rows, x_o, *inner[-reduce:], x_i, *cbs, c)
    sch.reverse_compute_at(store, x_o)
    for loop in (x_i, *cbs):
        sch.unroll(loop)
    sch.vectorize(c)
    sch.decompose_reduction(block, inner[-reduce])
    sch.vectorize(sch.get_loops(store)[-1])
    return mark_scheduled(sch.mod["main"])


def pack_expand(w: np.ndarray, block: int) -> np.ndarray:
    """ONNX ``(Ce, Cin, 1, 1)`` to ``(Ce/b, Cin, b)``."""
    ce, cin = w.shape[:2]
    return np.ascontiguousarray(w.reshape(ce // block, block, cin).transpose(0, 2, 1))


def pack_depthwise(w: np.ndarray, block: int) -> np.ndarray:
    """ONNX ``(Ce, 1, *K)`` to ``(Ce/b, *K, b)``."""
    ce, _, *kernel = w.shape
    return np.ascontiguousarray(np.moveaxis(w.reshape(ce // block, block, *kernel), 1, -1))


def _pack(block: int, w_expand, b_expand, w_depthwise, b_depthwise) -> list[np.ndarray]:
    arrays = (pack_expand(w_expand, block), b_expand, pack_depthwise(w_depthwise, block), b_depthwise)
    return [a for a in arrays if a is not None]


EXPAND_DEPTHWISE = ExpandDepthwise()

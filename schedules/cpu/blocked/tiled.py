"""The register-tiled blocked conv shared by ``direct`` and ``pointwise``.

``acc[n, ob, *o, oi] = sum_{ro, *k, ri} x[n, c_in, o*s + k*d] * W[ob//t, ro, *k, ri, (ob%t)*vb + oi]``
with ``vb`` the accumulator block, ``t = oc_tile // vb`` and the input channel
``c_in = group*cpg + ro*rb + ri`` (``rb`` the input block, or all channels of a group when
the input is plain). The register tile is ``reg_n`` positions of the last output axis
times ``oc_tile`` channels; the reduction runs outside it, the tile's ``oc_tile/vb``
vectors and ``reg_n`` positions are unrolled, the ``vb`` lanes vectorised.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from tvm import s_tir, te, tirx

from convc.schedules.cpu.blocked import prefetch, stages
from convc.schedules.cpu.blocked.kernel import Kernel, KernelBuild, mark_scheduled
from convc.schedules.cpu.blocked.layout import Channel
from convc.schedules.cpu.blocked.machine import Machine
from convc.schedules.cpu.blocked.problem import ConvProblem


@dataclass(frozen=True)
class TileConfig:
    """Knobs of the register tile: output channels per tile (a multiple of the
    accumulator block ``vec_block``) and output positions along the last axis; whether
    the channel tiles are the outer parallel loop (else the positions are).

    ``stream_weights`` (channel tiles outer only): chunks of input-channel blocks run outside
    the positions, so each chunk of weights is used for every position of its channel tile
    while the next chunk is prefetched (``prefetch``); the accumulators of all positions of
    the tile stay in a local buffer between chunks, and a channel tile is one parallel chunk.
    Made for small maps with large weights, where the plain order waits for each cold weight
    line (see ``Machine.cold_weight_bandwidth``)."""

    vec_block: int
    oc_tile: int
    reg_n: int
    oc_outer: bool = True
    stream_weights: bool = False


def reduction_block(p: ConvProblem) -> int:
    return p.in_block or p.in_per_group


def tiled_decline(p: ConvProblem) -> str | None:
    if p.in_block and p.in_per_group % p.in_block:
        return f"{p.in_per_group} input channels per group do not fill blocks of {p.in_block}"
    if p.out_block and p.out_per_group % p.out_block:
        return f"{p.out_per_group} output channels per group do not fill blocks of {p.out_block}"
    if stages.vector_block(p, 16) < 4:  # on no machine, however wide
        return f"{p.out_per_group} output channels per group: no vector block of 4 or more"
    return None


def best_reg_n(width: int, limit: int) -> int:
    """The register-tile width in [limit//2, limit] wasting the fewest tail positions."""
    options = range(min(limit, width), max(1, min(limit, width) // 2) - 1, -1)
    return min(options, key=lambda r: (-(-width // r) * r - width, -r))


def vectors(tile: int, vec_block: int, machine: Machine) -> int:
    """Vector registers one row of ``tile`` output channels occupies (each accumulator
    block of ``vec_block`` lanes takes whole registers)."""
    return tile // vec_block * -(-vec_block // machine.lanes)


def register_limit(tile: int, vec_block: int, machine: Machine) -> int:
    """The most positions per register tile: accumulators, one row of weights, one
    broadcast input and one spare (a full register file makes LLVM spill) fit in the
    vector registers."""
    v = vectors(tile, vec_block, machine)
    return (machine.registers - v - 2) // v


def tile_space(p: ConvProblem, machine: Machine) -> list[TileConfig]:
    """Every register tile that fits the machine's registers: channel tiles of 1, 2, 3, ...
    accumulator blocks dividing the channels, any width up to the register limit, either
    loop outermost, the channel tiles outermost also with ``stream_weights`` where the cold
    weight is worth hiding (``streams_pay``). ``tile_config`` first, then best first by ``score``."""
    default = tile_config(p, machine)
    ranked = _ranked(p, machine)
    if streams_pay(p, machine):
        ranked = [v for c in ranked for v in ([c, replace(c, stream_weights=True)] if c.oc_outer else [c])]
    return [default] + [c for c in ranked if c != default]


def streams_pay(p: ConvProblem, machine: Machine) -> bool:
    """Whether waiting for the cold weight costs at least ``STREAM_WORTH`` of the arithmetic at
    peak and the weight comes in more than one chunk (see ``TileConfig.stream_weights``)."""
    rb = reduction_block(p)
    blocks = p.in_per_group // rb
    if blocks <= stream_chunk(blocks, p.taps * rb):
        return False
    return worth_streaming(machine.cold_weight_seconds(4 * p.out_channels * p.in_per_group * p.taps),
                           p.flops / machine.peak)


def worth_streaming(wait: float, arithmetic: float) -> bool:
    """Whether a cold weight wait of ``wait`` seconds is worth hiding behind ``arithmetic``
    seconds (at peak): at least ``STREAM_WORTH`` of it, and at least ``STREAM_MIN_WAIT``."""
    return wait >= max(STREAM_WORTH * arithmetic, STREAM_MIN_WAIT)


# Below this ratio of weight wait to arithmetic the plain order wins (64 channels at 56x56: the
# accumulators of every position reloaded per block, 4% slower hot, nothing to hide).
STREAM_WORTH = 0.1
# Nor does it pay on a small weight: a 1-D phase conv (128->64, 2 taps, 256 positions, 64 KB,
# ~3 us of wait) ran 0.051 ms cold at 2 threads in the plain order, 0.069 ms streamed.
STREAM_MIN_WAIT = 10e-6


def tile_config(p: ConvProblem, machine: Machine) -> TileConfig:
    """The best-scoring register tile, the channel tiles outermost when the input is smaller
    than the weight (it is then re-read from cache once per channel tile)."""
    in_bytes = 4 * p.in_channels * math.prod(p.in_size)
    w_bytes = 4 * p.out_channels * p.in_per_group * p.taps
    return next(c for c in _ranked(p, machine) if c.oc_outer == (in_bytes <= w_bytes))


def streamed_config(p: ConvProblem, machine: Machine) -> TileConfig | None:
    """The best-scoring register tile with ``stream_weights``; None where streaming does not pay."""
    if not streams_pay(p, machine):
        return None
    return max((replace(c, stream_weights=True) for c in _ranked(p, machine) if c.oc_outer),
               key=lambda c: score(p, c, machine), default=None)


def _ranked(p: ConvProblem, machine: Machine) -> list[TileConfig]:
    vb = stages.vector_block(p, machine.lanes)
    width = p.out_size[-1]
    tiles = [k * vb for k in range(1, machine.registers) if p.out_channels % (k * vb) == 0
             and register_limit(k * vb, vb, machine) >= 1]
    configs = [TileConfig(vb, t, r, outer) for t in tiles
               for r in range(1, min(width, register_limit(t, vb, machine)) + 1) for outer in (True, False)]
    return sorted(configs, key=lambda c: score(p, c, machine), reverse=True)


def score(p: ConvProblem, cfg: TileConfig, machine: Machine) -> tuple[float, int, int, int]:
    """Rank of a register tile (higher is better): the modelled speed, the slower of the
    FMAs at ``utilisation`` and the weight stream split over the cores (which bounds a conv
    on a tiny map, a matrix-vector product); then more accumulators (fewer loads per FMA);
    then more positions (a tile streams its weights from cache once per ``reg_n`` positions:
    4/reg_n bytes per multiply-add, whatever its channel width); then wider channel tiles."""
    compute = p.flops / (machine.peak * utilisation(p, cfg, machine))
    stream = 4 * p.out_channels * p.in_per_group * p.taps / (machine.bandwidth * balance(p, cfg, machine))
    accumulators = cfg.reg_n * vectors(cfg.oc_tile, cfg.vec_block, machine)
    return round(-max(compute, stream), 9), accumulators, cfg.reg_n, cfg.oc_tile


def build_tiled(p: ConvProblem, cfg: TileConfig) -> KernelBuild:
    n_sp = p.ndim
    vb, tile, rb = cfg.vec_block, cfg.oc_tile, reduction_block(p)
    t = tile // vb
    cpg = p.in_per_group
    args = stages.placeholders(p, (p.out_channels // tile, cpg // rb, *p.kernel, rb, tile))
    padded = stages.pad_stage(p, args.data)
    ro = te.reduce_axis((0, cpg // rb), "ro")
    ks = [te.reduce_axis((0, k), f"k{i}") for i, k in enumerate(p.kernel)]
    ri = te.reduce_axis((0, rb), "ri")

    def in_channel(ob):
        group = 0 if p.groups == 1 else (ob * vb) // p.out_per_group
        if p.in_block:
            return Channel(group * (cpg // rb) + ro, ri, rb)
        return Channel(group * cpg + ro * rb + ri)

    def body(n, ob, *rest):
        *o, oi = rest
        x = stages.read(p, padded, n, in_channel(ob), stages.window(p, o, ks))
        w = args.weight[(ob // t, ro, *ks, ri, (ob % t) * vb + oi)]
        return te.sum(x * w, axis=[ro, *ks, ri])

    acc = te.compute((p.batch, p.out_channels // vb, *p.out_size, vb), body, name="acc")
    out = stages.output(p, args, stages.acc_reader(acc, vb))
    func = te.create_prim_func(args.signature(out))
    sch = s_tir.Schedule(func)
    block = sch.get_sblock("acc")
    loops = sch.get_loops(block)
    n, ob, o, oi = loops[0], loops[1], loops[2:2 + n_sp], loops[2 + n_sp]
    r_o, r_k, r_i = loops[3 + n_sp], loops[4 + n_sp:-1], loops[-1]
    ob_o, ob_i = sch.split(ob, [None, t])
    last_o, last_i = sch.split(o[-1], [None, cfg.reg_n])
    positions = [*o[:-1], last_o]
    if cfg.stream_weights:
        outer = [n, ob_o]
        chunk = stream_chunk(cpg // rb, p.taps * rb)
        r_o, r_chunk = sch.split(r_o, [None, chunk])
        sch.reorder(*outer, r_o, *positions, r_chunk, *r_k, r_i, last_i, ob_i, oi)
    else:
        outer = [n, ob_o, *positions] if cfg.oc_outer else [n, *positions, ob_o]
        sch.reorder(*outer, r_o, *r_k, r_i, last_i, ob_i, oi)
    fused = sch.fuse(*outer)
    sch.parallel(fused)
    sch.set_scope(block, 0, "local")
    sch.reverse_compute_at(sch.get_sblock("out"), fused)
    sch.unroll(last_i)
    sch.unroll(ob_i)
    sch.vectorize(oi)
    sch.decompose_reduction(block, r_o)
    if p.out_block:
        sch.vectorize(sch.get_loops(sch.get_sblock("out"))[-1])
    if p.padded:
        stages.schedule_copy(sch, "pad")
    func = sch.mod["main"]
    if cfg.stream_weights and cpg // rb > chunk:
        func = _prefetch_next_block(sch, func, block, fused, positions, [r_chunk, *r_k], r_o, chunk, p, cfg)
    return KernelBuild(mark_scheduled(func), _packer(tile, rb))


def _prefetch_next_block(sch, func, block, fused, positions, inner, r_o, chunk: int, p: ConvProblem,
                         cfg: TileConfig):
    """With ``stream_weights``: while a channel tile works through the positions with one chunk
    of input-channel blocks, it prefetches the weights of the next chunk (``prefetch``), spread
    over the positions and as many of the ``inner`` loops as bring the bursts to
    ``prefetch.BURST_LINES``."""
    weight = prefetch.weight_read_by(sch, block)
    tiles = p.out_channels // cfg.oc_tile
    ob_o = tirx.floormod(sch.get(fused).loop_var, tiles)
    start = [ob_o, sch.get(r_o).loop_var * chunk] + [0] * (len(weight.shape) - 2)
    floats = chunk * p.taps * reduction_block(p) * cfg.oc_tile
    return prefetch.prefetch_weights(func, weight, [sch.get(loop) for loop in positions],
                                     [sch.get(loop) for loop in inner], start, floats)


def stream_chunk(blocks: int, steps: int) -> int:
    """Input-channel blocks per chunk of a streamed reduction: the fewest (dividing ``blocks``)
    that give ``STREAM_STEPS`` reduction steps between reloads of the accumulators, each block
    being ``steps`` steps."""
    return next((c for c in range(1, blocks + 1) if blocks % c == 0 and c * steps >= STREAM_STEPS), blocks)


# Reduction steps per reload of a streamed tile's accumulators (1x1 with 16-channel blocks
# reloaded every 16 steps ran 17% slower warm than the plain order).
STREAM_STEPS = 64


def _packer(tile: int, rb: int):
    def pack(w, bias):
        return stages.pack_blocked_weight(w, tile, rb), bias
    return pack


# The cost of reloading a tile's accumulators, in reduction steps (fitted: 1x1, 16-channel blocks:
# 17% slower hot than the plain order; 3x3: 2-5%).
STREAM_RELOAD_STEPS = 3.5

# A register tile that does not divide the row is guarded at every position (the tail is
# not peeled): measured ~40% slower on the whole kernel (32->32 channels, 128x128, tile 13 vs 12).
GUARDED_TAIL = 0.6


def utilisation(p: ConvProblem, cfg: TileConfig, machine: Machine) -> float:
    """Useful lanes x useful tile positions (the tail) x FMA issue rate x core balance.

    Per reduction step the tile issues ``reg_n * v`` FMAs and ``reg_n + v`` loads (the
    broadcasts and one weight row); it takes the longest of the FMA latency (fewer than
    latency x ports independent accumulators stall), the FMA issue time and the load issue
    time, plus the loop's own overhead (which favours big tiles)."""
    width = p.out_size[-1]
    row_tiles = -(-width // cfg.reg_n)
    tail = width / (row_tiles * cfg.reg_n) * (1.0 if width % cfg.reg_n == 0 else GUARDED_TAIL)
    reload = 1.0
    if cfg.stream_weights:  # the tile's accumulators are reloaded for every chunk of weights
        rb = reduction_block(p)
        reload = reload_factor(stream_chunk(p.in_per_group // rb, p.taps * rb) * p.taps * rb)
    return fma_issue(cfg.reg_n, cfg.oc_tile, cfg.vec_block, machine) * tail * balance(p, cfg, machine) * reload


def reload_factor(steps: int) -> float:
    """The share of a streamed tile's time spent on FMAs when its accumulators are reloaded
    every ``steps`` reduction steps (see ``STREAM_RELOAD_STEPS``)."""
    return steps / (steps + STREAM_RELOAD_STEPS)


def fma_issue(reg_n: int, oc_tile: int, vec_block: int, machine: Machine) -> float:
    """Useful lanes x FMA issue rate of a register tile of ``reg_n`` positions x ``oc_tile``
    channels (see ``utilisation``)."""
    v = vectors(oc_tile, vec_block, machine)
    lanes = min(1.0, vec_block / machine.lanes)
    fmas = reg_n * v
    cycles = max(machine.fma_latency, fmas / machine.fma_ports, (reg_n + v) / machine.load_ports)
    return lanes * fmas / machine.fma_ports / (cycles + machine.step_overhead)


def balance(p: ConvProblem, cfg: TileConfig, machine: Machine) -> float:
    """Work per core over the slowest core's: the parallel loop has one chunk per register
    tile of positions and channel tile (per channel tile with ``stream_weights``); the slowest
    core runs ceil(chunks / cores)."""
    chunks = p.batch * p.out_channels // cfg.oc_tile
    if not cfg.stream_weights:  # a streamed channel tile runs all its positions in one chunk
        chunks *= math.prod(p.out_size[:-1]) * -(-p.out_size[-1] // cfg.reg_n)
    return chunks / (-(-chunks // machine.cores) * machine.cores)


def pad_bytes(p: ConvProblem) -> float:
    """The padding copy: the padded input written once and read back."""
    if not p.padded:
        return 0.0
    size = p.batch * p.in_channels
    for i, pb, pe in zip(p.in_size, p.pads_begin, p.pads_end):
        size *= i + pb + pe
    return 2.0 * 4 * size


class TiledKernel(Kernel):
    """A candidate built on the register-tiled conv (``direct``, ``1x1``): knobs, space,
    build and utilisation are the tile's; subclasses say when they apply."""

    def _decline(self, p: ConvProblem) -> str | None:
        return tiled_decline(p)

    def _default_config(self, p: ConvProblem, machine: Machine) -> TileConfig:
        """``tile_config``, or ``streamed_config`` where the estimate says it is faster."""
        options = [tile_config(p, machine), streamed_config(p, machine)]
        return min((c for c in options if c is not None), key=lambda c: self.estimate(p, c, machine))

    def _space(self, p: ConvProblem, machine: Machine) -> list[TileConfig]:
        default = self._default_config(p, machine)
        return [default] + [c for c in tile_space(p, machine) if c != default]

    def build(self, p: ConvProblem, config: TileConfig) -> KernelBuild:
        return build_tiled(p, config)

    def _utilisation(self, p: ConvProblem, config: TileConfig, machine: Machine) -> float:
        return utilisation(p, config, machine)

    def _hides_weight_wait(self, p: ConvProblem, config: TileConfig) -> bool:
        return config.stream_weights

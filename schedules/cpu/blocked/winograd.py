"""``winograd``: the 3x3 or 2x2 stride-1 conv as Winograd F(m x m, r x r), fewer multiplications.

With ``alpha = m + r - 1`` and the transform matrices of ``winograd_matrices``, the output is cut
into ``m x m`` tiles (``P`` of them over the batch); each tile reads an ``alpha x alpha``
window of the padded input. Three phases:

1. input transform ``V[e1, e2, p, cb, ci] = (B^T d_p B)[e1, e2]`` per tile and channel,
   vectorised over the input block, separably (rows then columns) with constant
   coefficients (zero terms are never emitted);
2. ``alpha^2`` GEMMs ``M[e1, e2, p, k] = sum_c V[e1, e2, p, c] * U[e1, e2, c, k]``: the
   register tile of ``tiled`` (``reg_n`` tiles x ``oc_tile`` channels, a broadcast ``V``
   scalar times a contiguous ``U`` vector), the weight ``U = G g G^T`` transformed in NumPy
   when it is packed (``(alpha, alpha, K/T, C, T)``);
3. output transform ``Y = A^T M A`` per tile, computed at each tile of the output stage
   (fused epilogue: bias, activations, residual operands).

Either each phase runs over all tiles in parallel (``V`` and ``M`` go through memory, the
weight is streamed once: deep layers on small maps), or the parallel loop runs over groups
of tile rows and each group pads its input rows and runs the three phases in cache (the
weight is re-read per group: early layers on large maps).

2x2 kernels are what the sub-pixel pass leaves of a 4x4 stride-2 transposed conv (DCGAN's
upsampling layers): F(m x m, 2 x 2) turns their 4 multiplications per output into
``(m + 1)^2 / m^2``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.polynomial import polynomial
from tvm import s_tir, te, tirx

from convc.schedules.cpu.blocked import prefetch, stages, tiled
from convc.schedules.cpu.blocked.kernel import Kernel, KernelBuild, mark_scheduled
from convc.schedules.cpu.blocked.machine import Machine, host_machine
from convc.schedules.cpu.blocked.problem import ConvProblem

# interpolation points of F(m, r), in order (plus the point at infinity); m + r - 2 are used
POINTS = (0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5)
# output tiles offered. Rel. L2 error against float64 over 64..512 input channels (F(2x2),
# F(4x4), F(6x6)): 3-7e-7, 2-4e-6, 3-8e-6 (direct: 4-11e-7), inside the networks' 1e-4 budget
TILES = (4, 2, 6)
KERNELS = ((3, 3), (2, 2))  # F(m x m, r x r) for these r


def winograd_matrices(m: int, r: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A^T, G, B^T)`` of F(m, r) (float64, shapes ``(m, a)``, ``(a, r)``, ``(a, a)``,
    ``a = m + r - 1``) by the Cook-Toom construction over ``POINTS`` and infinity:
    ``y = A^T [(G g) * (B^T d)]`` is the correlation ``y_i = sum_k g_k d_(i+k)``."""
    alpha = m + r - 1
    if not 2 <= alpha <= len(POINTS) + 1:
        raise ValueError(f"F({m}, {r}) needs {alpha - 1} interpolation points, have {len(POINTS)}")
    points = np.array(POINTS[:alpha - 1])
    at, g, bt = np.zeros((m, alpha)), np.zeros((alpha, r)), np.zeros((alpha, alpha))
    for j, x in enumerate(points):
        others = np.delete(points, j)
        at[:, j] = x ** np.arange(m)
        g[j] = x ** np.arange(r) / np.prod(x - others)
        bt[j, :alpha - 1] = polynomial.polyfromroots(others)  # prod over the other points (x - a)
    at[m - 1, alpha - 1] = 1.0
    g[alpha - 1, r - 1] = 1.0
    bt[alpha - 1] = polynomial.polyfromroots(points)
    return at, g, bt


@dataclass(frozen=True)
class WinogradConfig:
    """Output tile ``m``; the GEMM register tile: ``reg_n`` tiles x ``oc_tile`` output
    channels (a multiple of the output block ``vec_block``); ``rows``: 0 runs each phase over
    all tiles, else all phases per group of ``rows`` tile rows (``reg_n`` divides the group),
    keeping the transformed tiles in cache but reading the whole weight per group.
    ``stream_weights`` (``rows`` 0 only): each GEMM's channel tile runs over all tiles per
    chunk of input channels and prefetches the next chunk of its weight, as
    ``tiled.TileConfig.stream_weights``."""

    m: int
    vec_block: int
    oc_tile: int
    reg_n: int
    rows: int = 0
    stream_weights: bool = False


def _alpha(p: ConvProblem, m: int) -> int:
    """The transformed tile's side for output tile ``m`` and ``p``'s (square) kernel."""
    return m + p.kernel[0] - 1


def tile_grid(p: ConvProblem, m: int, rows: int = 0) -> tuple[int, int, int]:
    """(tile rows, tile columns, tiles over the batch) of the ``m x m`` tiles covering the
    output, the rows rounded up to whole groups of ``rows`` (the extra rows read zeros)."""
    th, tw = (-(-o // m) for o in p.out_size)
    if rows:
        th = -(-th // rows) * rows
    return th, tw, p.batch * th * tw


def _weighted_sum(coefficients, terms) -> tirx.PrimExpr:
    """``sum_i c_i * t_i`` over the non-zero constants ``c_i`` (+-1 without a multiply)."""
    out = None
    for c, term in zip(coefficients, terms):
        if c == 0:
            continue
        value = term() if c == 1 else -term() if c == -1 else term() * tirx.const(float(c), "float32")
        out = value if out is None else out + value
    return out if out is not None else tirx.const(0.0, "float32")


def _by_constant(index, rows) -> tirx.PrimExpr:
    """``rows[index]`` for a loop ``index`` the schedule unrolls (each arm then folds away)."""
    out = rows[-1]
    for i in range(len(rows) - 2, -1, -1):
        out = tirx.Select(index == i, rows[i], out)
    return out


# vector adds/multiplies of the transforms retired per cycle per core (loads and stores
# compete with them)
TRANSFORM_OPS_PER_CYCLE = 1.0
# a transformed weight over this many L2s is re-read per row group as slowly as when cold.
# Measured cold, 2 threads (2 MB L2): 2.4 MB F(4x4) 128ch 28x28 weight in 1 / 4 / 7 groups
# 0.56 / 0.53 / 0.58 ms; 4.2 MB F(2x2) 256ch 14x14 in 1 / 4 groups 0.66 / 0.85 ms; 16.8 MB
# F(2x2) 512ch 7x7 in 1 / 2 / 4 groups 1.38 / 2.12 / 2.54 ms
REREAD_L2_FACTOR = 1.5


class Winograd(Kernel):
    name = "winograd"
    efficiency = 0.85

    def _decline(self, p: ConvProblem) -> str | None:
        if p.ndim != 2 or p.kernel not in KERNELS:
            return f"kernel {p.kernel} is not 3x3 or 2x2 (2-D)"
        if p.strides != (1, 1) or p.dilations != (1, 1):
            return f"strides {p.strides} / dilations {p.dilations} (only 1)"
        if p.groups != 1:
            return f"groups={p.groups} (only 1)"
        if not p.in_block or not p.out_block:
            return (f"plain layout (in_block={p.in_block}, out_block={p.out_block}): "
                    "needs blocked input and output")
        return tiled.tiled_decline(p)

    def _space(self, p: ConvProblem, machine: Machine) -> list[WinogradConfig]:
        """Every tile size, row grouping and register tile; the default, then by estimate."""
        default = self._default_config(p, machine)
        configs = [c for m in TILES for rows in _row_groups(p, m, machine)
                   for c in _ranked(p, m, rows, machine)]
        configs += [dataclasses.replace(c, stream_weights=True) for c in configs
                    if not c.rows and _streams_pay(p, c.m, machine)]
        configs.sort(key=lambda c: self.estimate(p, c, machine))
        return [default] + [c for c in configs if c != default]

    def _default_config(self, p: ConvProblem, machine: Machine) -> WinogradConfig:
        """The best-ranked register tile of each tile size and row grouping, the one with
        the lowest estimate."""
        candidates = [_ranked(p, m, rows, machine)[0] for m in TILES for rows in _row_groups(p, m, machine)]
        candidates += [dataclasses.replace(c, stream_weights=True) for c in candidates
                       if not c.rows and _streams_pay(p, c.m, machine)]
        return min(candidates, key=lambda c: self.estimate(p, c, machine))

    def estimate(self, p: ConvProblem, config: WinogradConfig, machine: Machine | None = None) -> float:
        """As ``Kernel.estimate``: the GEMMs at the register tile's utilisation plus the wait
        for the cold transformed weight (``alpha^2 / r^2`` times the conv's), which every row
        group reads again, as slowly as the first time, when it is well over the L2 (see
        ``REREAD_L2_FACTOR``), and which ``stream_weights`` fetches during the GEMMs (the
        longer of the two counts);
        then the transforms' vector arithmetic, and the traffic of the padded input, ``V`` and ``M``
        through memory when the phases run over all tiles (a row group keeps them in cache)."""
        mc = machine or host_machine()
        alpha, m = _alpha(p, config.m), config.m
        th, _, tiles = tile_grid(p, m, config.rows)
        padded = -(-tiles // config.reg_n) * config.reg_n
        gemm = 2 * alpha * alpha * padded * p.in_channels * p.out_channels
        compute = gemm / (mc.peak * self.efficiency * _utilisation(p, config, mc))
        weight = 4 * alpha * alpha * p.in_channels * p.out_channels
        if config.rows and weight > REREAD_L2_FACTOR * mc.l2_bytes:  # each group reads it again
            groups = p.batch * th // config.rows
            cold = -(-groups // mc.cores) * weight / mc.cold_weight_bandwidth
        else:
            cold = mc.cold_weight_seconds(weight)
        busy = max(compute, cold) if config.stream_weights else compute + cold
        at, _, bt = winograd_matrices(m, p.kernel[0])
        vector_ops = tiles * (p.in_channels * 2 * alpha * np.count_nonzero(bt)
                              + p.out_channels * (alpha + m) * np.count_nonzero(at)) / mc.lanes
        transforms = vector_ops / (TRANSFORM_OPS_PER_CYCLE * mc.clock_hz * mc.cores)
        traffic = 0.0  # a row group pads its rows and keeps V and M in cache
        if not config.rows:
            traffic = tiled.pad_bytes(p) + 4 * 2 * alpha * alpha * padded * (p.in_channels + p.out_channels)
        return float(busy + transforms + traffic / mc.bandwidth + mc.call_overhead)

    def build(self, p: ConvProblem, config: WinogradConfig) -> KernelBuild:
        return KernelBuild(mark_scheduled(_schedule(p, config)), _packer(config))


def _row_groups(p: ConvProblem, m: int, machine: Machine) -> list[int]:
    """0 (phases over all tiles) and every number of tile rows (up to all of them) whose
    transformed input and output tiles fit half the L2. None for F(6x6) over a batch: TVM's
    simplifier and CSE passes then take 25-30 s on the group's tile indices (measured, 2
    images, 12x12 to 56x56; F(4x4) and one image: about 1 s)."""
    alpha = _alpha(p, m)
    if m == 6 and p.batch > 1:
        return [0]
    th, tw, _ = tile_grid(p, m)
    group_bytes = 4 * alpha * alpha * tw * (p.in_channels + p.out_channels)
    return [0] + [r for r in range(1, th + 1) if r * group_bytes <= machine.l2_bytes // 2]


def _ranked(p: ConvProblem, m: int, rows: int, machine: Machine) -> list[WinogradConfig]:
    """Register tiles of output tile ``m`` and ``rows`` that fit the registers (and divide a
    row group), best first."""
    vb = p.out_block
    _, tw, tiles = tile_grid(p, m, rows)
    width = rows * tw if rows else tiles
    configs = [WinogradConfig(m, vb, t, r, rows)
               for t in range(vb, p.out_channels + 1, vb) if p.out_channels % t == 0
               for r in range(1, min(width, tiled.register_limit(t, vb, machine)) + 1)
               if not rows or width % r == 0]

    def key(c):  # speed, then more accumulators, then more tiles (fewer weight loads per FMA)
        padded = -(-tiles // c.reg_n) * c.reg_n
        speed = _utilisation(p, c, machine) * tiles / padded
        return -round(speed, 2), -c.reg_n * tiled.vectors(c.oc_tile, vb, machine), -c.reg_n, -c.oc_tile
    return sorted(configs, key=key)


def _utilisation(p: ConvProblem, c: WinogradConfig, machine: Machine) -> float:
    """FMA issue of the GEMM register tile (as ``tiled.utilisation``) x core balance over the
    parallel chunks (row groups, or GEMM register tiles)."""
    th, _, tiles = tile_grid(p, c.m, c.rows)
    if c.rows:
        chunks = p.batch * th // c.rows
    else:  # a streamed GEMM runs all its tiles in one chunk
        tile_chunks = 1 if c.stream_weights else -(-tiles // c.reg_n)
        chunks = _alpha(p, c.m) ** 2 * (p.out_channels // c.oc_tile) * tile_chunks
    balance = chunks / (-(-chunks // machine.cores) * machine.cores)
    reload = 1.0
    if c.stream_weights:  # the accumulators of every tile are reloaded per chunk of channels
        reload = tiled.reload_factor(_chunk(p) * p.in_block)
    return tiled.fma_issue(c.reg_n, c.oc_tile, c.vec_block, machine) * balance * reload


def _chunk(p: ConvProblem) -> int:
    """Input-channel blocks per chunk of a streamed GEMM (see ``tiled.stream_chunk``)."""
    return tiled.stream_chunk(p.in_channels // p.in_block, p.in_block)


def _streams_pay(p: ConvProblem, m: int, machine: Machine) -> bool:
    """Whether the transformed weight's cold wait is worth hiding (as ``tiled.streams_pay``)."""
    alpha = _alpha(p, m)
    weight = 4 * alpha * alpha * p.in_channels * p.out_channels
    gemm = 2 * alpha * alpha * tile_grid(p, m)[2] * p.in_channels * p.out_channels
    return (p.in_channels // p.in_block > _chunk(p)
            and tiled.worth_streaming(machine.cold_weight_seconds(weight), gemm / machine.peak))


def _packer(config: WinogradConfig):
    def pack(w: np.ndarray, bias):
        _, g, _ = winograd_matrices(config.m, w.shape[-1])
        u = np.einsum("ar,kcrs,bs->abkc", g, w.astype(np.float64), g)  # (alpha, alpha, K, C)
        a, _, k, c = u.shape
        t = config.oc_tile
        u = u.reshape(a, a, k // t, t, c).transpose(0, 1, 2, 4, 3)
        return np.ascontiguousarray(u.astype(np.float32)), bias
    return pack


def _schedule(p: ConvProblem, cfg: WinogradConfig) -> tirx.PrimFunc:
    m, vb, ib = cfg.m, cfg.vec_block, p.in_block
    alpha, t = _alpha(p, m), cfg.oc_tile // cfg.vec_block
    at, _, bt = winograd_matrices(m, p.kernel[0])
    th, tw, tiles = tile_grid(p, m, cfg.rows)
    # tile index t = (n * th + row) * tw + column; the phases over all tiles pad the count to
    # whole register tiles (re-reading the last tile), row groups pad the rows (zeros)
    padded_tiles = tiles if cfg.rows else -(-tiles // cfg.reg_n) * cfg.reg_n
    cblocks, kblocks = p.in_channels // ib, p.out_channels // vb
    args = stages.placeholders(p, (alpha, alpha, p.out_channels // cfg.oc_tile, p.in_channels, cfg.oc_tile))
    # the zero border reaches the last whole tile: (th*m + r - 1) x (tw*m + r - 1)
    grown = dataclasses.replace(p, pads_end=tuple(
        e + g * m - o for e, g, o in zip(p.pads_end, (th, tw), p.out_size)))
    padded = stages.pad_stage(grown, args.data)

    def window(tile, a, b, cb, ci):
        if padded_tiles > tiles:
            tile = tirx.min(tile, tiles - 1)
        n, rest = tile // (th * tw), tile % (th * tw)
        return padded[n, cb, rest // tw * m + a, rest % tw * m + b, ci]

    # input transform, separably: rows (T = B^T d), then columns (V = T B)
    rows = te.compute((alpha, alpha, padded_tiles, cblocks, ib), lambda e1, b, tile, cb, ci: _by_constant(
        e1, [_weighted_sum(bt[e], [lambda a=a: window(tile, a, b, cb, ci) for a in range(alpha)])
             for e in range(alpha)]), name="wg_rows")
    v = te.compute((alpha, alpha, padded_tiles, cblocks, ib), lambda e1, e2, tile, cb, ci: _by_constant(
        e2, [_weighted_sum(bt[e], [lambda b=b: rows[e1, b, tile, cb, ci] for b in range(alpha)])
             for e in range(alpha)]), name="wg_v")
    rc, ri = te.reduce_axis((0, cblocks), "rc"), te.reduce_axis((0, ib), "ri")
    gemm = te.compute(
        (alpha, alpha, padded_tiles, kblocks, vb),
        lambda e1, e2, tile, kb, kv: te.sum(
            v[e1, e2, tile, rc, ri] * args.weight[e1, e2, kb // t, rc * ib + ri, (kb % t) * vb + kv],
            axis=[rc, ri]), name="wg_gemm")
    # output transform, separably: columns (Z = M A), then rows (Y = A^T Z)
    cols = te.compute((alpha, m, tiles, kblocks, vb), lambda e1, j, tile, kb, kv: _by_constant(
        j, [_weighted_sum(at[jj], [lambda e2=e2: gemm[e1, e2, tile, kb, kv] for e2 in range(alpha)])
            for jj in range(m)]), name="wg_cols")
    y = te.compute((m, m, tiles, kblocks, vb), lambda i, j, tile, kb, kv: _by_constant(
        i, [_weighted_sum(at[ii], [lambda e1=e1: cols[e1, j, tile, kb, kv] for e1 in range(alpha)])
            for ii in range(m)]), name="wg_y")

    def acc(n, channel, spatial):
        h, w = spatial
        kb, kv = channel.split(vb)
        return y[h % m, w % m, (n * th + h // m) * tw + w // m, kb, kv]

    out = stages.output(p, args, acc)
    sch = s_tir.Schedule(te.create_prim_func(args.signature(out)))
    group = _schedule_output(sch, cfg)
    for name in ("wg_gemm", "wg_v") if group is not None else ():
        sch.compute_at(sch.get_sblock(name), group, preserve_unit_loops=True)
    add_prefetch = _schedule_gemm(sch, p, cfg, parallel=group is None)
    _schedule_input(sch, parallel=group is None)
    if grown.padded and group is not None:  # each group pads its own rows
        pad = sch.get_sblock("pad")
        sch.compute_at(pad, group, preserve_unit_loops=True)
        sch.vectorize(sch.get_loops(pad)[-1])
    elif grown.padded:
        stages.schedule_copy(sch, "pad")
    return add_prefetch(sch.mod["main"]) if add_prefetch else sch.mod["main"]


def _schedule_output(sch: s_tir.Schedule, cfg: WinogradConfig) -> s_tir.LoopRV | None:
    """The output stage tile by tile, each tile's ``Y`` computed at it; the outer parallel
    loop: over (image, channel block, tile row), or over groups of ``cfg.rows`` tile rows of
    one image (returned: the other phases are computed at it)."""
    m = cfg.m
    block = sch.get_sblock("out")
    n, kb, h, w, kv = sch.get_loops(block)
    h_o, h_i = sch.split(h, [None, m])
    w_o, w_i = sch.split(w, [None, m])
    if cfg.rows:
        group, rows = sch.split(h_o, [None, cfg.rows])
        sch.reorder(n, group, rows, w_o, kb, h_i, w_i, kv)
        outer, at = sch.fuse(n, group), kb
    else:
        sch.reorder(n, kb, h_o, w_o, h_i, w_i, kv)
        outer, at = sch.fuse(n, kb, h_o), w_o
    sch.parallel(outer)
    sch.compute_inline(sch.get_sblock("wg_y"))
    for name in ("wg_cols",):
        stage = sch.get_sblock(name)
        sch.compute_at(stage, at, preserve_unit_loops=True)
        *_, first, second, _, _, lanes = sch.get_loops(stage)
        sch.unroll(first)
        sch.unroll(second)
        sch.vectorize(lanes)
    sch.unroll(h_i)
    sch.unroll(w_i)
    sch.vectorize(kv)
    return outer if cfg.rows else None


def _schedule_input(sch: s_tir.Schedule, parallel: bool) -> None:
    block = sch.get_sblock("wg_v")
    *_, e1, e2, tile, cb, ci = sch.get_loops(block)
    sch.reorder(tile, cb, e1, e2, ci)
    outer = sch.fuse(tile, cb)
    if parallel:
        sch.parallel(outer)
    sch.compute_at(sch.get_sblock("wg_rows"), outer, preserve_unit_loops=True)
    *_, r1, r2, _, _, lanes = sch.get_loops(sch.get_sblock("wg_rows"))
    sch.unroll(r1)
    sch.unroll(r2)
    sch.vectorize(lanes)
    sch.unroll(e1)
    sch.unroll(e2)
    sch.vectorize(ci)


def _schedule_gemm(sch: s_tir.Schedule, p: ConvProblem, cfg: WinogradConfig, parallel: bool) -> Callable | None:
    """The GEMMs on the register tile; with ``stream_weights``, the function that adds the
    weight prefetch to the finished PrimFunc."""
    block = sch.get_sblock("wg_gemm")
    *_, e1, e2, tile, kb, kv, rc, ri = sch.get_loops(block)
    tile_o, tile_i = sch.split(tile, [None, cfg.reg_n])
    kb_o, kb_i = sch.split(kb, [None, cfg.oc_tile // cfg.vec_block])
    if cfg.stream_weights:
        rc, rc_i = sch.split(rc, [None, _chunk(p)])
        sch.reorder(e1, e2, kb_o, rc, tile_o, rc_i, ri, tile_i, kb_i, kv)
        outer = sch.fuse(e1, e2, kb_o)
    else:
        sch.reorder(e1, e2, kb_o, tile_o, rc, ri, tile_i, kb_i, kv)
        outer = sch.fuse(e1, e2, kb_o, tile_o)
    if parallel:
        sch.parallel(outer)
    store = sch.cache_write(block, 0, "local")
    sch.reverse_compute_at(store, outer)
    sch.vectorize(sch.get_loops(store)[-1])
    sch.unroll(tile_i)
    sch.unroll(kb_i)
    sch.vectorize(kv)
    sch.decompose_reduction(block, rc)
    if not cfg.stream_weights:
        return None

    def add_prefetch(func: tirx.PrimFunc) -> tirx.PrimFunc:
        weight = prefetch.weight_read_by(sch, block)
        # the fused loop runs over (e1, e2, kb_o) in the weight's own order: block f of C x T floats
        f = sch.get(outer).loop_var
        floats = _chunk(p) * p.in_block * cfg.oc_tile
        start = [0, 0, f, sch.get(rc).loop_var * (_chunk(p) * p.in_block), 0]
        return prefetch.prefetch_weights(func, weight, [sch.get(tile_o)], [sch.get(rc_i), sch.get(ri)],
                                         start, floats)
    return add_prefetch


WINOGRAD = Winograd()

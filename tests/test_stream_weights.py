"""The tiled and Winograd convs with ``stream_weights``: chunks of input-channel blocks outside
the positions, the next chunk's weight prefetched (``schedules/cpu/blocked/prefetch.py``)."""
from __future__ import annotations

import dataclasses

import pytest
from tvm import tirx

from convc.schedules.cpu.blocked import by_name
from convc.schedules.cpu.blocked import prefetch, tiled
from convc.schedules.cpu.blocked.machine import Machine
from convc.schedules.cpu.blocked.tiled import TileConfig
from convc.schedules.cpu.blocked.winograd import TILES, WINOGRAD, WinogradConfig
from convc.tune.encode import decode_config, knobs
from tests.test_schedules_blocked_kernels import ADD, RELU, problem, run_and_compare

B = 16
STREAMED = [
    problem(4 * B, 2 * B, (5, 7), 3, bias=True, epilogue=(RELU,), ib=B, ob=B),       # padded, tail tile
    problem(4 * B, 2 * B, (9, 8), 3, s=2, pb=(1, 0), pe=(0, 1), ib=B, ob=B),          # stride, asymmetric pads
    problem(8 * B, 4 * B, (4, 4), 3, g=2, ib=B, ob=0, batch=2),                       # groups, batch, plain out
    problem(4 * B, 2 * B, (3, 3), 1, bias=True, epilogue=(ADD, RELU), operands=((1, 2 * B, 3, 3),),
            ib=B, ob=B),                                                              # 1x1, residual
    problem(3 * B, B, (11,), 5, d=2, ib=B, ob=B),                                     # 1-D, dilation
    problem(2 * B, B, (3, 4, 5), 3, ib=B, ob=B),                                      # 3-D
    problem(2 * B, B, (6, 6), 3, ib=0, ob=B),                                         # plain input: one block
    problem(8 * B, 2 * B, (3, 5), 1, ib=B, ob=B),                                     # 1x1: two chunks of 4
]


@pytest.mark.parametrize("index", range(len(STREAMED)))
@pytest.mark.parametrize("reg_n", [2, 3])
def test_streamed_tiles_match_reference(index, reg_n):
    p = STREAMED[index]
    run_and_compare(by_name("direct"), p, TileConfig(B, B, reg_n, oc_outer=True, stream_weights=True))


WINOGRAD_STREAMED = [
    problem(8 * B, 2 * B, (6, 7), 3, bias=True, epilogue=(RELU,), ib=B, ob=B),
    problem(16 * B, B, (5, 5), 3, pb=(0, 2), pe=(1, 0), ib=B // 2, ob=B, batch=2),
    problem(8 * B, 2 * B, (8, 8), 2, pb=(1, 1), pe=(0, 0), ib=B, ob=B, epilogue=(ADD,),
            operands=((1, 2 * B, 8, 8),)),
]


@pytest.mark.parametrize("index", range(len(WINOGRAD_STREAMED)))
@pytest.mark.parametrize("m", TILES)
def test_streamed_winograd_matches_reference(index, m):
    p = WINOGRAD_STREAMED[index]
    config = WinogradConfig(m, B, 2 * B if p.out_channels % (2 * B) == 0 else B, 3, 0, stream_weights=True)
    build = WINOGRAD.build(p, config)
    assert _prefetches(build.func) == 1
    run_and_compare(WINOGRAD, p, config)


def test_chunks_reach_the_steps_between_reloads():
    assert tiled.stream_chunk(32, 144) == 1       # 3x3, 16-channel blocks
    assert tiled.stream_chunk(32, 16) == 4        # 1x1: 4 blocks, 64 steps
    assert tiled.stream_chunk(6, 16) == 6         # 4 does not divide 6
    assert tiled.stream_chunk(2, 16) == 2         # all there is


def _prefetches(func) -> int:
    return func.script().count("llvm.prefetch")


def test_prefetch_only_with_several_weight_blocks():
    config = TileConfig(B, B, 2, oc_outer=True, stream_weights=True)
    assert _prefetches(by_name("direct").build(STREAMED[0], config).func) == 1
    assert _prefetches(by_name("direct").build(STREAMED[-2], config).func) == 0  # one block: nothing ahead
    assert _prefetches(by_name("direct").build(STREAMED[-1], config).func) == 1  # two chunks of 4 blocks
    assert _prefetches(by_name("direct").build(STREAMED[3], config).func) == 0   # one chunk
    plain = dataclasses.replace(config, stream_weights=False)
    assert _prefetches(by_name("direct").build(STREAMED[0], plain).func) == 0


def test_prefetch_address_stays_inside_the_weight():
    """The next block of the last block is clamped to the weight's last element."""
    weight = tirx.decl_buffer((2, 3, 4), "float32", name="w")
    assert [int(i) for i in prefetch._advance(weight, [1, 2, 0], 4 + 3)] == [1, 2, 3]  # constants fold
    assert [int(i) for i in prefetch._advance(weight, [0, 2, 1], 4)] == [1, 0, 1]


BIG_WEIGHT = problem(512, 512, (7, 7), 3, ib=B, ob=B)   # ResNet's last stage: 9.4 MB of weight, 7x7 map
BIG_MAP = problem(64, 64, (56, 56), 3, ib=B, ob=B)      # its first: 147 KB of weight, 56x56 map
AVX512 = Machine(lanes=16, registers=32)


def test_default_streams_only_where_the_weight_wait_counts():
    direct = by_name("direct")
    assert direct.default_config(BIG_WEIGHT, AVX512).stream_weights
    assert not direct.default_config(BIG_MAP, AVX512).stream_weights
    assert not any(c.stream_weights for c in direct.space(BIG_MAP, AVX512))
    small = problem(128, 64, (256,), 2, pb=1, pe=0, ib=B, ob=B)  # 64 KB of weight: ~3 us to wait
    assert not tiled.streams_pay(small, AVX512)
    streamed = [c for c in direct.space(BIG_WEIGHT, AVX512) if c.stream_weights]
    assert streamed and all(c.oc_outer for c in streamed)


def test_estimate_hides_the_weight_wait():
    direct = by_name("direct")
    config = direct.default_config(BIG_WEIGHT, AVX512)
    plain = dataclasses.replace(config, stream_weights=False)
    wait = AVX512.cold_weight_seconds(4 * 512 * 512 * 9)
    assert direct.estimate(BIG_WEIGHT, config, AVX512) < direct.estimate(BIG_WEIGHT, plain, AVX512)
    assert direct.estimate(BIG_WEIGHT, config, AVX512) >= wait
    # the accumulators reloaded per block: a 1x1 tile loses more than a 3x3 one
    one = problem(512, 512, (7, 7), 1, ib=B, ob=B)
    cfg = TileConfig(B, 32, 7, True, True)
    ratio = lambda p: (tiled.utilisation(p, cfg, AVX512)  # noqa: E731
                       / tiled.utilisation(p, dataclasses.replace(cfg, stream_weights=False), AVX512))
    assert ratio(one) < ratio(BIG_WEIGHT) < 1.0


def test_records_without_the_knob_decode_to_the_plain_order():
    config = TileConfig(B, 32, 7, True, True)
    old = {k: v for k, v in knobs(config).items() if k != "stream_weights"}
    assert decode_config(config, "TileConfig", old) == dataclasses.replace(config, stream_weights=False)
    assert decode_config(config, "TileConfig", {**knobs(config), "unknown": 1}) is None
    assert decode_config(config, "TileConfig", {k: v for k, v in old.items() if k != "reg_n"}) is None


def test_a_streamed_channel_tile_is_one_parallel_chunk():
    """Streaming runs all positions of a channel tile on one core: 64 channels in one tile of 64
    keep one of two cores idle, in two tiles of 32 both busy."""
    p = problem(384, 64, (14, 14), 1, ib=B, ob=B)
    two_cores = dataclasses.replace(AVX512, cores=2)
    assert tiled.balance(p, TileConfig(B, 64, 7, True, True), two_cores) == 0.5
    assert tiled.balance(p, TileConfig(B, 32, 7, True, True), two_cores) == 1.0
    assert tiled.balance(p, TileConfig(B, 64, 7, True, False), two_cores) == 1.0
    assert by_name("1x1").default_config(p, two_cores).oc_tile <= 32 or \
        not by_name("1x1").default_config(p, two_cores).stream_weights

"""Every blocked conv kernel against the NumPy reference over a sweep of shapes."""
from __future__ import annotations

import numpy as np
import pytest
import tvm

from convc.ir import Op
from convc.ir.ops.conv import EpilogueStep, conv_reference
from convc.ir.ops.elementwise import AlphaAttrs, ClipAttrs
from convc.schedules.cpu.blocked import (ConvProblem, Kernel, by_name, pack, pack_operand, physical_shape,
                                         unpack)
from convc.schedules.cpu.blocked.machine import Machine
from convc.target import channel_block, resolve_target

TARGET = resolve_target("llvm")  # tests run what they build: always the host's CPU
HOST_BLOCK = channel_block(TARGET)
# blocked layouts swept: the host's and the other x86 width (both run on any x86 host:
# a block wider than the registers takes several of them)
BLOCKS = sorted({HOST_BLOCK, 8, 16} - {0})


def problem(c, m, size, k, *, g=1, s=1, pb=None, pe=None, d=1, ib=8, ob=8, bias=False,
            epilogue=(), operands=(), batch=1) -> ConvProblem:
    n = len(size)
    tup = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v,) * n  # noqa: E731
    pb = tup(k // 2 if pb is None else pb)
    return ConvProblem(batch, c, m, g, tuple(size), tup(k), tup(s), pb, tup(pb if pe is None else pe),
                       tup(d), ib, ob, "float32", bias, tuple(epilogue), tuple(operands))


def run_and_compare(kernel: Kernel, p: ConvProblem, config=None, seed: int = 0) -> None:
    """Build ``kernel`` for ``p``, run it on packed random data, compare with ``conv_reference``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(p.in_shape, dtype=np.float32)
    w = rng.standard_normal(p.weight_shape, dtype=np.float32)
    b = rng.standard_normal(p.out_channels, dtype=np.float32) if p.has_bias else None
    ops = [rng.standard_normal(s, dtype=np.float32) for s in p.operand_shapes]
    build = kernel.build(p, kernel.default_config(p) if config is None else config)
    assert build.func.attrs["tirx.is_scheduled"]
    lib = tvm.compile(tvm.IRModule({"main": build.func}), target=TARGET)
    wp, bp = build.pack_weight(w, b)
    out = tvm.runtime.tensor(np.full(physical_shape(p.out_shape, p.out_block), np.nan, np.float32))
    args = [pack(x, p.in_block), wp, *([bp] if b is not None else []),
            *[pack_operand(o, p.out_shape, p.out_block) for o in ops]]
    lib["main"](*[tvm.runtime.tensor(a) for a in args], out)
    ref = conv_reference(p.attrs, x, w, b, *ops)
    got = unpack(out.numpy(), p.out_block)
    scale = np.sqrt(p.in_per_group * p.taps)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * scale)


RELU = EpilogueStep(Op.RELU)
CLIP6 = EpilogueStep(Op.CLIP, ClipAttrs(0.0, 6.0))
ADD = EpilogueStep(Op.ADD)
MUL = EpilogueStep(Op.MUL)

def cases(b: int) -> dict[str, list[ConvProblem]]:
    """(kernel, problem) with channel block ``b``: each one exercises something the kernel promises."""
    h = b // 2
    return {
        "direct": [
            problem(b, b, (9, 11), 3, ib=b, ob=b),                                 # odd sizes, tail tile
            problem(b, 2 * b, (10, 9), 3, s=2, pb=(1, 0), pe=(2, 1), ib=b, ob=b),  # stride, asymmetric pads
            problem(b, 2 * b, (12, 12), 3, d=2, bias=True, epilogue=(RELU,), ib=b, ob=b),  # dilation
            problem(4 * b, 4 * b, (7, 8), 3, g=2, ib=b, ob=0),                    # groups, plain output
            problem(3, 2 * b, (15, 15), 7, s=2, ib=0, ob=b, bias=True),           # stem-like, plain input
            problem(b, 3 * b, (20,), 5, s=2, epilogue=(CLIP6,), ib=b, ob=b),      # 1-D, oc not a tile multiple
            problem(b, b, (5, 6, 7), 3, bias=True, epilogue=(ADD, RELU), operands=((1, b, 5, 6, 7),),
                    ib=b, ob=b),                                                  # 3-D, residual
            problem(2 * b, 2 * b, (8, 8), 3, ib=h, ob=h, batch=2),                # half block, batch 2
            problem(4 * b, 4 * b, (3, 3), 3, s=2, ib=b, ob=b),                    # tiny map, stride 2
        ],
        "1x1": [
            problem(2 * b, b, (7, 9), 1, bias=True, epilogue=(ADD, RELU), operands=((1, b, 7, 9),), ib=b, ob=b),
            problem(b, 2 * b, (9, 9), 1, s=2, epilogue=(MUL,), operands=((2 * b, 1, 1),), ib=b, ob=b),
            problem(b, 2 * b, (13,), 1, ib=0, ob=0),
            problem(2 * b, 2 * b, (3, 4, 5), 1, g=2, epilogue=(EpilogueStep(Op.LEAKY_RELU, AlphaAttrs(0.1)),),
                    ib=b, ob=b),
            problem(8 * b, 125 * 8, (1, 1), 1, bias=True, ib=b, ob=0),            # FC head on a 1x1 map
        ],
        "depthwise": [
            problem(2 * b, 2 * b, (9, 10), 3, g=2 * b, bias=True, epilogue=(CLIP6,), ib=b, ob=b),
            problem(b, b, (11, 11), 5, g=b, s=2, d=2, pb=(1, 2), pe=(3, 0), ib=b, ob=b),
            problem(2 * b, 2 * b, (17,), 3, g=2 * b, epilogue=(ADD,), operands=((1, 2 * b, 17),), ib=b, ob=b),
            problem(b, b, (4, 5, 6), 3, g=b, ib=h, ob=h, epilogue=(EpilogueStep(Op.HARD_SWISH),)),
        ],
        "im2col": [
            problem(2 * b, b, (9, 11), 3, bias=True, epilogue=(RELU,), ib=b, ob=b),
            problem(3, 2 * b, (15, 15), 7, s=2, ib=0, ob=b, pb=(3, 2), pe=(2, 3)),
            problem(b, 2 * b, (10, 9), 3, s=2, d=2, ib=b, ob=0, epilogue=(ADD,), operands=((2 * b, 1, 1),)),
            problem(b, 2 * b, (19,), 4, s=3, pb=0, pe=2, bias=True, ib=b, ob=b),
            problem(b, b, (4, 5, 6), 3, epilogue=(EpilogueStep(Op.SIGMOID),), ib=b, ob=b),
        ],
        "narrow": [
            problem(4 * b, 3, (12, 12), 2, pb=(1, 1), pe=(0, 0), bias=True, epilogue=(EpilogueStep(Op.TANH),),
                    ib=b, ob=0),                                                   # a DCGAN image head phase
            problem(2 * b, 2, (20,), 3, s=2, pb=1, pe=1, ib=b, ob=0),              # 1-D, stride
            problem(b, 5, (5, 6, 7), 3, d=2, pb=(2, 1, 0), pe=(1, 2, 3), ib=b, ob=0,
                    epilogue=(ADD,), operands=((1, 5, 4, 5, 6),)),                 # 3-D, dilation, residual
            problem(2 * b, 1, (9, 9), 1, batch=2, ib=b, ob=0),                     # 1x1 to one channel, batch 2
        ],
        "generic": [
            problem(2 * b, 2 * b, (6, 6), 3, g=2 * b, ib=b, ob=0),
            problem(b, b, (5, 7), 3, g=b // 4, ib=b, ob=b),
        ],
    }


# the generic kernel's layouts that no block above reaches: plain, odd and mismatched blocks
ODD_LAYOUTS = [
    problem(6, 9, (11, 13), 3, g=3, s=2, ib=0, ob=0, bias=True, epilogue=(RELU,)),
    problem(6, 9, (7, 8), 3, g=3, pb=(0, 2), pe=(1, 0), d=2, ib=2, ob=3),
    problem(5, 7, (10,), 4, s=2, ib=0, ob=7, epilogue=(ADD,), operands=((1, 7, 6),)),
    problem(4, 8, (3, 4, 5), 3, g=2, ib=4, ob=0, epilogue=(MUL, EpilogueStep(Op.TANH)), operands=((8, 1, 1, 1),)),
]

CASES = [(name, b, i) for b in BLOCKS for name, ps in cases(b).items() for i in range(len(ps))]


@pytest.mark.parametrize("name,block,index", CASES, ids=[f"{n}-b{b}-{i}" for n, b, i in CASES])
def test_kernel_matches_reference(name, block, index):
    kernel, p = by_name(name), cases(block)[name][index]
    assert kernel.decline(p) is None, kernel.decline(p)
    run_and_compare(kernel, p)


@pytest.mark.parametrize("index", range(len(ODD_LAYOUTS)))
def test_generic_in_odd_layouts(index):
    run_and_compare(by_name("generic"), ODD_LAYOUTS[index])


@pytest.mark.parametrize("name", ["direct", "im2col"])
def test_non_default_configs(name):
    """Other points of the tuning space compute the same conv."""
    kernel = by_name(name)
    p = problem(HOST_BLOCK, 2 * HOST_BLOCK, (9, 10), 3, s=2, bias=True, ib=HOST_BLOCK, ob=HOST_BLOCK)
    for config in kernel.space(p)[1::len(kernel.space(p)) // 3]:
        run_and_compare(kernel, p, config)


# the default configs for both x86 widths (an AVX-512 tile on an AVX2 host spills, still correct)
MACHINES = {"avx2": Machine(lanes=8, registers=16), "avx512": Machine(lanes=16, registers=32)}


@pytest.mark.parametrize("machine", sorted(MACHINES))
@pytest.mark.parametrize("name", ["direct", "1x1", "depthwise"])
def test_configs_of_each_machine(name, machine):
    b = 16
    p = {"direct": problem(b, 2 * b, (6, 15), 3, bias=True, ib=b, ob=b),
         "1x1": problem(2 * b, 4 * b, (5, 29), 1, ib=b, ob=b),
         "depthwise": problem(b, b, (6, 19), 3, g=b, ib=b, ob=b)}[name]
    kernel = by_name(name)
    run_and_compare(kernel, p, kernel.default_config(p, MACHINES[machine]))

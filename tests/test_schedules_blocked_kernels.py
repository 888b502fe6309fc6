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

TARGET = tvm.target.Target({"kind": "llvm", "mcpu": tvm.target.codegen.llvm_get_system_cpu(),
                            "num-cores": 2})


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

# (kernel, problem): each one exercises something the kernel promises
CASES = {
    "direct": [
        problem(16, 16, (9, 11), 3),                                   # odd sizes, tail tile
        problem(16, 32, (10, 9), 3, s=2, pb=(1, 0), pe=(2, 1)),        # stride, asymmetric pads
        problem(8, 16, (12, 12), 3, d=2, bias=True, epilogue=(RELU,)),  # dilation
        problem(32, 32, (7, 8), 3, g=2, ob=0),                          # groups, plain output
        problem(3, 16, (15, 15), 7, s=2, ib=0, bias=True),             # stem-like, plain input
        problem(8, 24, (20,), 5, s=2, epilogue=(CLIP6,)),              # 1-D, oc not a tile multiple
        problem(8, 8, (5, 6, 7), 3, bias=True, epilogue=(ADD, RELU), operands=((1, 8, 5, 6, 7),)),  # 3-D
        problem(16, 16, (8, 8), 3, ib=4, ob=4, batch=2),                # other block, batch 2
    ],
    "1x1": [
        problem(32, 16, (7, 9), 1, bias=True, epilogue=(ADD, RELU), operands=((1, 16, 7, 9),)),
        problem(16, 32, (9, 9), 1, s=2, epilogue=(MUL,), operands=((32, 1, 1),)),
        problem(8, 16, (13,), 1, ib=0, ob=0),
        problem(16, 16, (3, 4, 5), 1, g=2, epilogue=(EpilogueStep(Op.LEAKY_RELU, AlphaAttrs(0.1)),)),
    ],
    "depthwise": [
        problem(16, 16, (9, 10), 3, g=16, bias=True, epilogue=(CLIP6,)),
        problem(8, 8, (11, 11), 5, g=8, s=2, d=2, pb=(1, 2), pe=(3, 0)),
        problem(16, 16, (17,), 3, g=16, epilogue=(ADD,), operands=((1, 16, 17),)),
        problem(8, 8, (4, 5, 6), 3, g=8, ib=4, ob=4, epilogue=(EpilogueStep(Op.HARD_SWISH),)),
    ],
    "im2col": [
        problem(16, 16, (9, 11), 3, bias=True, epilogue=(RELU,)),
        problem(3, 16, (15, 15), 7, s=2, ib=0, pb=(3, 2), pe=(2, 3)),
        problem(8, 16, (10, 9), 3, s=2, d=2, ob=0, epilogue=(ADD,), operands=((16, 1, 1),)),
        problem(8, 16, (19,), 4, s=3, pb=0, pe=2, bias=True),
        problem(8, 8, (4, 5, 6), 3, epilogue=(EpilogueStep(Op.SIGMOID),)),
    ],
    "generic": [
        problem(6, 9, (11, 13), 3, g=3, s=2, ib=0, ob=0, bias=True, epilogue=(RELU,)),
        problem(6, 9, (7, 8), 3, g=3, pb=(0, 2), pe=(1, 0), d=2, ib=2, ob=3),
        problem(5, 7, (10,), 4, s=2, ib=0, ob=7, epilogue=(ADD,), operands=((1, 7, 6),)),
        problem(4, 8, (3, 4, 5), 3, g=2, ib=4, ob=0, epilogue=(MUL, EpilogueStep(Op.TANH)), operands=((8, 1, 1, 1),)),
        problem(16, 16, (6, 6), 3, g=16, ib=8, ob=0),
    ],
}


@pytest.mark.parametrize("name,index", [(k, i) for k, cases in CASES.items() for i in range(len(cases))])
def test_kernel_matches_reference(name, index):
    kernel, p = by_name(name), CASES[name][index]
    assert kernel.decline(p) is None, kernel.decline(p)
    run_and_compare(kernel, p)


@pytest.mark.parametrize("name", ["direct", "im2col"])
def test_non_default_configs(name):
    """Other points of the tuning space compute the same conv."""
    kernel = by_name(name)
    p = problem(16, 32, (9, 10), 3, s=2, bias=True)
    for config in kernel.space(p)[1:40:13]:
        run_and_compare(kernel, p, config)

"""Running a blocked conv kernel on NumPy data, for the tests of schedules/cpu/blocked."""
from __future__ import annotations

import numpy as np
import tvm

from convc.ir.ops.conv import conv_reference
from convc.schedules.cpu.blocked import ConvProblem, Kernel, pack, pack_operand, physical_shape, unpack

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

"""``one_task_per_core``: parallel loops split into per-core tasks compute exactly what they did."""
from __future__ import annotations

import re

import numpy as np
import pytest
import tvm

from convc.backend import backend_of
from convc.schedules.cpu.blocked import by_name, pack, physical_shape
from convc.schedules.cpu.blocked.expand_depthwise import EXPAND_DEPTHWISE
from convc.schedules.cpu.blocked.machine import Machine
from convc.schedules.cpu.tasks import one_task_per_core
from tests.test_expand_depthwise import pair
from tests.test_schedules_blocked_kernels import CLIP6, TARGET, problem

MACHINE = Machine(lanes=16, registers=32)
# (kernel, problem): parallel extents that divide 2 and 3 and ones that do not
CASES = [
    ("1x1", problem(48, 24, (14, 14), 1, pb=0, ib=16, ob=8, bias=True)),
    ("direct", problem(32, 32, (15, 15), 3, s=2, ib=16, ob=16, bias=True, epilogue=(CLIP6,))),
    ("im2col", problem(3, 16, (17, 17), 3, s=2, ib=0, ob=16)),
    ("depthwise", problem(32, 32, (9, 11), 3, g=32, ib=16, ob=16, bias=True)),
    ("winograd", problem(16, 32, (10, 10), 3, ib=16, ob=16)),
]


def _parallel_extents(func) -> list[int]:
    return [int(n) for n in re.findall(r"T\.parallel\((\d+)\)", func.script())]


def _run(func, args, out_shape) -> np.ndarray:
    lib = tvm.compile(tvm.IRModule({"main": func}), target=TARGET)
    out = tvm.runtime.tensor(np.full(out_shape, np.nan, np.float32))
    lib["main"](*[tvm.runtime.tensor(a) for a in args], out)
    return out.numpy()


@pytest.mark.parametrize("name,p", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("cores", [2, 3])
def test_kernel_output_unchanged(name, p, cores):
    rng = np.random.default_rng(0)
    kernel = by_name(name)
    assert kernel.decline(p) is None
    built = kernel.build(p, kernel.default_config(p, MACHINE))
    w, b = built.pack_weight(rng.standard_normal(p.weight_shape, dtype=np.float32),
                             rng.standard_normal(p.out_channels, dtype=np.float32) if p.has_bias else None)
    args = [pack(rng.standard_normal(p.in_shape, dtype=np.float32), p.in_block), w, *([b] if p.has_bias else [])]
    split = one_task_per_core(built.func, cores)
    assert max(_parallel_extents(built.func)) > cores  # the case exercises a split
    assert max(_parallel_extents(split)) <= cores
    shape = physical_shape(p.out_shape, p.out_block)
    np.testing.assert_array_equal(_run(split, args, shape), _run(built.func, args, shape))


def test_fused_kernel_output_unchanged():
    rng = np.random.default_rng(1)
    fused = pair(16, 96, (14, 12), s=2)
    built = EXPAND_DEPTHWISE.build(fused, EXPAND_DEPTHWISE.default_config(fused, MACHINE))
    e, d = fused.expand, fused.depthwise
    args = [pack(rng.standard_normal(e.in_shape, dtype=np.float32), e.in_block),
            *built.pack_weight(rng.standard_normal(e.weight_shape, dtype=np.float32),
                               rng.standard_normal(e.out_channels, dtype=np.float32),
                               rng.standard_normal(d.weight_shape, dtype=np.float32),
                               rng.standard_normal(d.out_channels, dtype=np.float32))]
    shape = physical_shape(d.out_shape, d.out_block)
    np.testing.assert_array_equal(_run(one_task_per_core(built.func, 2), args, shape), _run(built.func, args, shape))


def test_small_loops_and_one_core_are_left_alone():
    p = problem(16, 16, (2, 2), 1, pb=0, ib=16, ob=16)
    built = by_name("1x1").build(p, by_name("1x1").default_config(p, MACHINE))
    assert one_task_per_core(built.func, 1).same_as(built.func)
    few = max(_parallel_extents(built.func))
    assert one_task_per_core(built.func, few).same_as(built.func)


def test_cpu_backend_splits_every_kernel_it_compiles():
    backend = backend_of(TARGET)
    machine = backend.machine(TARGET)
    p = CASES[0][1]
    built = by_name("1x1").build(p, by_name("1x1").default_config(p, machine))
    finished = backend.finish(built.func, machine)
    if machine.cores > 1:
        assert max(_parallel_extents(finished)) == machine.cores
    else:
        assert finished.same_as(built.func)

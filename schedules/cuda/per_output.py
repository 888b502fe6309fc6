"""One GPU thread per output element, its reduction (if any) in a register.

Applies to any PrimFunc with one output block: producers that are spatial (padding,
casts) are inlined; the output's loops are fused, innermost axis last, so that threads
of a warp write consecutive elements, and split into (blockIdx.x, threadIdx.x); each
reduction left (the conv before its epilogue, a pool's sum before the divide, the output
itself) is computed at the thread loop into a ``local`` buffer and written back once.
It is the last resort of every op and the schedule of pooling windows and of convs no
conv kernel takes (float64, weights computed at run time).
"""
from __future__ import annotations

import tvm
from tvm import s_tir, tirx

from convc.schedules.cpu.common import ScheduleContext, inline_producers, is_reduction
from convc.schedules.cuda.common import THREADS, bind_spatial, max_threads


def per_output(func: tirx.PrimFunc, ctx: ScheduleContext, target: tvm.target.Target) -> s_tir.Schedule | None:
    """The one-thread-per-output schedule of ``func``, or None when it has several outputs."""
    sch = s_tir.Schedule(func)
    inline_producers(sch)
    outputs = sch.get_output_blocks("root")
    if len(outputs) != 1:
        return None
    (out,) = outputs
    producers = [b for b in sch.get_child_blocks(sch.get_sblock("root"))
                 if sch.get(b).name_hint != sch.get(out).name_hint]
    threads = min(THREADS, max_threads(target))
    computed_at = list(producers)
    if is_reduction(sch, out):
        computed_at.append(out)
        out = sch.cache_write(out, 0, "local")
        thread = bind_spatial(sch, out, threads)
        sch.compute_at(computed_at[-1], thread)
    else:
        thread = bind_spatial(sch, out, threads)
    for block in reversed(producers):
        sch.set_scope(block, 0, "local")
        sch.compute_at(block, thread)
    for block in computed_at:
        _hoist_init(sch, block, thread)
    return sch


def _hoist_init(sch: s_tir.Schedule, block, thread) -> None:
    """Give a reduction under ``thread`` its own init statement before its reduction loops,
    so that the init runs even when they are empty (a sum over a zero-size axis)."""
    if not is_reduction(sch, block):
        return
    loops = sch.get_loops(block)
    inner = loops[[sch.get(l).same_as(sch.get(thread)) for l in loops].index(True) + 1:]
    if inner:
        sch.decompose_reduction(block, inner[0])

"""CUDA schedules: conv kernels in ``conv``; every other PrimFunc is scheduled here.

Candidates are tried in order per op (``RULES``, default ``DEFAULT_RULES``); a candidate
takes (PrimFunc, ScheduleContext, target) and returns an ``s_tir.Schedule`` or None. A
result counts only when every block of it runs under a ``blockIdx`` binding. The target
is ``tvm.target.Target.current()`` (convc builds under ``with target:``), else sm_90.
"""
from __future__ import annotations

import logging

from tvm import s_tir, tirx

from convc.errors import CodegenError
from convc.ir import Op
from convc.schedules.cpu.common import ScheduleContext
from convc.schedules.cuda.common import current_target, outputs_empty, unbound_blocks
from convc.schedules.cuda.dlight import (FALLBACK, GEMV, GENERAL_REDUCTION, MATMUL, REDUCTION,
                                         TRANSPOSE, Rule)
from convc.schedules.cuda.per_output import per_output

# per_output before Fallback: it keeps a reduction's accumulator in a register
DEFAULT_RULES: tuple[Rule, ...] = (MATMUL, GEMV, REDUCTION, GENERAL_REDUCTION, TRANSPOSE, per_output,
                                   FALLBACK)
# windows and plain-path convs: one thread per output, the window summed in a register
RULES: dict[Op, tuple[Rule, ...]] = {
    Op.CONV: (per_output, FALLBACK),
    Op.MAX_POOL: (per_output, FALLBACK),
    Op.AVG_POOL: (per_output, FALLBACK),
}

_log = logging.getLogger(__name__)

# what a dlight rule raises when its pattern matching meets a PrimFunc it did not expect
_RULE_ERRORS = (s_tir.schedule.ScheduleError, RuntimeError, ValueError, AssertionError, IndexError)


def schedule(func: tirx.PrimFunc, ctx: ScheduleContext) -> tirx.PrimFunc:
    """``func`` with its blocks bound to GPU threads, marked ``tirx.is_scheduled``.

    Raises ``CodegenError`` naming the op when no candidate schedules it.
    """
    if outputs_empty(func):  # nothing to compute, nothing to bind
        return func.with_attr("tirx.is_scheduled", True)
    target = current_target()
    tried = []
    for rule in RULES.get(ctx.op, DEFAULT_RULES):
        try:
            sch = rule(func, ctx, target)
        except _RULE_ERRORS as err:
            _log.debug("CUDA rule %s failed on %s: %s", rule.__name__, ctx.op, err)
            tried.append(f"{rule.__name__}: {type(err).__name__}")
            continue
        if sch is None:
            continue
        scheduled = sch.mod["main"]
        unbound = unbound_blocks(scheduled)
        if unbound:
            tried.append(f"{rule.__name__}: blocks {unbound} not bound to threads")
            continue
        return scheduled.with_attr("tirx.is_scheduled", True)
    raise CodegenError(f"no CUDA schedule for a {ctx.op} kernel ({'; '.join(tried) or 'no rule applied'})")


__all__ = ["ScheduleContext", "DEFAULT_RULES", "RULES", "schedule"]

"""The fallback for any PrimFunc: inline prologues, then each remaining block by kind."""
from __future__ import annotations

from tvm import s_tir

from convc.schedules.cpu.common import ScheduleContext, inline_producers, is_reduction, lanes
from convc.schedules.cpu.injective import schedule_injective
from convc.schedules.cpu.layout import relayout_blocked_reduction
from convc.schedules.cpu.reduction import schedule_reduction


def generic(func, ctx: ScheduleContext) -> s_tir.Schedule:
    """Reductions parallel over their outputs; spatial blocks fused, vectorised and parallel."""
    sch = s_tir.Schedule(func)
    inline_producers(sch)
    relayout_blocked_reduction(sch)
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        if is_reduction(sch, block):
            schedule_reduction(sch, block)
        else:
            schedule_injective(sch, block, lanes(ctx.dtype))
    return sch

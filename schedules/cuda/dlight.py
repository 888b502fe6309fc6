"""TVM's dlight GPU rules as convc schedule candidates (they return None when they do not apply)."""
from __future__ import annotations

from typing import Callable

import tvm
from tvm import s_tir, tirx
from tvm.s_tir.dlight import gpu

from convc.schedules.cpu.common import ScheduleContext

Rule = Callable[[tirx.PrimFunc, ScheduleContext, tvm.target.Target], "s_tir.Schedule | None"]


def _rule(dlight_rule) -> Rule:
    def apply(func: tirx.PrimFunc, ctx: ScheduleContext, target: tvm.target.Target):
        sch = dlight_rule.apply(func, target, False)
        return sch if isinstance(sch, s_tir.Schedule) else None  # rules may return a list
    apply.__name__ = f"dlight.{type(dlight_rule).__name__}"
    return apply


# the order ApplyDefaultSchedule uses in TVM's own GPU pipelines, Fallback last
MATMUL, GEMV, REDUCTION, GENERAL_REDUCTION, TRANSPOSE, FALLBACK = (
    _rule(gpu.Matmul()), _rule(gpu.GEMV()), _rule(gpu.Reduction()), _rule(gpu.GeneralReduction()),
    _rule(gpu.Transpose()), _rule(gpu.Fallback()))

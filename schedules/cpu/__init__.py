"""CPU schedules: candidates tried in order; the first that applies schedules the PrimFunc.

A candidate takes (PrimFunc, ScheduleContext) and returns an ``s_tir.Schedule`` or None
when it does not apply. ``generic`` always applies, so every PrimFunc gets a parallel,
vectorised schedule.
"""
from __future__ import annotations

import logging
from typing import Callable

from tvm import s_tir, tirx

from convc.schedules.cpu.common import ScheduleContext
from convc.schedules.cpu.conv import direct_conv, direct_conv_width
from convc.schedules.cpu.generic import generic
from convc.schedules.cpu.interleave import interleave_phases, interleave_unblocked

Candidate = Callable[[tirx.PrimFunc, ScheduleContext], "s_tir.Schedule | None"]

CANDIDATES: tuple[Candidate, ...] = (direct_conv, direct_conv_width, interleave_phases, interleave_unblocked,
                                      generic)

_log = logging.getLogger(__name__)


def schedule(func: tirx.PrimFunc, ctx: ScheduleContext) -> tirx.PrimFunc:
    """``func`` scheduled by the first candidate that applies, marked ``tirx.is_scheduled``."""
    for candidate in CANDIDATES:
        try:
            sch = candidate(func, ctx)
        except s_tir.schedule.ScheduleError as err:
            _log.debug("schedule %s failed on %s: %s", candidate.__name__, ctx.op, err)
            continue
        if sch is not None:
            return sch.mod["main"].with_attr("tirx.is_scheduled", True)
    return func.with_attr("tirx.is_scheduled", True)


__all__ = ["ScheduleContext", "CANDIDATES", "schedule"]

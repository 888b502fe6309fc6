"""Choosing a blocked CPU kernel for a conv by the analytical cost model."""
from __future__ import annotations

from typing import Any

from convc.schedules.cpu.blocked.candidates import CANDIDATES
from convc.schedules.cpu.blocked.kernel import Kernel
from convc.schedules.cpu.blocked.machine import Machine, host_machine
from convc.schedules.cpu.blocked.problem import ConvProblem
from convc.schedules.selection import Verdict, choose_among


def choose(p: ConvProblem, machine: Machine | None = None) -> tuple[Kernel | None, Any, list[Verdict]]:
    """``choose_among`` the CPU candidates on ``machine`` (default: the host)."""
    return choose_among(CANDIDATES, p, machine or host_machine())

"""Choosing a kernel for a conv by the analytical cost model."""
from __future__ import annotations

from typing import Any

from convc.schedules.cpu.blocked.candidates import CANDIDATES
from convc.schedules.cpu.blocked.kernel import Kernel
from convc.schedules.cpu.blocked.machine import Machine, host_machine
from convc.schedules.cpu.blocked.problem import ConvProblem

Verdict = tuple[str, "float | str"]


MARGIN = 0.05


def choose(p: ConvProblem, machine: Machine | None = None) -> tuple[Kernel | None, Any, list[Verdict]]:
    """The candidate with the lowest estimate on ``machine`` (default: the host) with its
    default config, and for every candidate its name with its estimate in seconds or the
    reason it declined. (None, None, verdicts) when every candidate declines (e.g. float64).

    The model ranks, it does not predict to the percent: a later candidate (``CANDIDATES``
    lists the simpler, faster-compiling kernels first) wins only by more than ``MARGIN``.
    """
    machine = machine or host_machine()
    verdicts: list[Verdict] = []
    best: tuple[float, Kernel, Any] | None = None
    for kernel in CANDIDATES:
        reason = kernel.decline(p)
        if reason is not None:
            verdicts.append((kernel.name, reason))
            continue
        config = kernel.default_config(p, machine)
        seconds = kernel.estimate(p, config, machine)
        verdicts.append((kernel.name, seconds))
        if best is None or seconds < best[0] * (1 - MARGIN):
            best = (seconds, kernel, config)
    if best is None:
        return None, None, verdicts
    return best[1], best[2], verdicts

"""Choosing a CUDA conv kernel by the analytical cost model (the contract of
``schedules/cpu/blocked/select.py:choose``)."""
from __future__ import annotations

from typing import Any

from convc.schedules.cpu.blocked.problem import ConvProblem
from convc.schedules.cpu.blocked.select import MARGIN, Verdict
from convc.schedules.cuda.conv.candidates import CANDIDATES
from convc.schedules.cuda.conv.kernel import DEFAULT_ARCH, Gpu, GpuKernel


def choose(p: ConvProblem, gpu: Gpu | None = None) -> tuple[GpuKernel | None, Any, list[Verdict]]:
    """The candidate with the lowest estimate on ``gpu`` (default: ``DEFAULT_ARCH``) with its
    default config, and for every candidate its name with its estimate in seconds or the
    reason it declined. (None, None, verdicts) when every candidate declines.

    A later candidate in ``CANDIDATES`` wins only by more than ``MARGIN``.
    """
    gpu = gpu or Gpu.from_arch(DEFAULT_ARCH)
    verdicts: list[Verdict] = []
    best: tuple[float, GpuKernel, Any] | None = None
    for kernel in CANDIDATES:
        reason = kernel.decline(p)
        if reason is not None:
            verdicts.append((kernel.name, reason))
            continue
        config = kernel.default_config(p, gpu)
        seconds = kernel.estimate(p, config, gpu)
        verdicts.append((kernel.name, seconds))
        if best is None or seconds < best[0] * (1 - MARGIN):
            best = (seconds, kernel, config)
    if best is None:
        return None, None, verdicts
    return best[1], best[2], verdicts

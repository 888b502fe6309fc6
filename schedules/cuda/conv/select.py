"""Choosing a CUDA conv kernel by the analytical cost model."""
from __future__ import annotations

from typing import Any

from convc.schedules.cpu.blocked.problem import ConvProblem
from convc.schedules.cuda.conv.candidates import CANDIDATES
from convc.schedules.cuda.conv.kernel import DEFAULT_ARCH, Gpu, GpuKernel
from convc.schedules.selection import Verdict, choose_among


def choose(p: ConvProblem, gpu: Gpu | None = None) -> tuple[GpuKernel | None, Any, list[Verdict]]:
    """``choose_among`` the CUDA candidates on ``gpu`` (default: ``DEFAULT_ARCH``)."""
    return choose_among(CANDIDATES, p, gpu or Gpu.from_arch(DEFAULT_ARCH))

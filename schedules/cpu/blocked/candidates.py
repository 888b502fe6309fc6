"""The blocked conv kernels, in preference order (ties in the cost model go to the first)."""
from __future__ import annotations

from convc.schedules.cpu.blocked.depthwise import DEPTHWISE
from convc.schedules.cpu.blocked.direct import DIRECT
from convc.schedules.cpu.blocked.generic import GENERIC
from convc.schedules.cpu.blocked.im2col import IM2COL
from convc.schedules.cpu.blocked.kernel import Kernel
from convc.schedules.cpu.blocked.narrow import NARROW
from convc.schedules.cpu.blocked.pointwise import POINTWISE
from convc.schedules.cpu.blocked.winograd import WINOGRAD

CANDIDATES: tuple[Kernel, ...] = (POINTWISE, DEPTHWISE, DIRECT, IM2COL, WINOGRAD, NARROW,
                                  GENERIC)


def by_name(name: str) -> Kernel:
    """The candidate called ``name`` (``1x1``, ``depthwise``, ``direct``, ``im2col``, ``winograd``,
    ``narrow``, ``generic``)."""
    for kernel in CANDIDATES:
        if kernel.name == name:
            return kernel
    raise KeyError(f"no conv kernel named {name!r}; known: {[k.name for k in CANDIDATES]}")

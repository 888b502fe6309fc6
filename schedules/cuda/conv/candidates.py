"""The CUDA conv kernels, in preference order (ties in the cost model go to the first).

The tensor-core kernel (float16 only) comes first, the special cases before the general
kernels; ``direct`` applies to every float32 conv and comes last, as the fallback.
"""
from __future__ import annotations

from convc.schedules.cuda.conv.depthwise import DEPTHWISE
from convc.schedules.cuda.conv.direct import DIRECT
from convc.schedules.cuda.conv.implicit_gemm import IMPLICIT_GEMM
from convc.schedules.cuda.conv.kernel import GpuKernel
from convc.schedules.cuda.conv.pointwise import POINTWISE
from convc.schedules.cuda.conv.tensorcore import TENSOR_CORE

CANDIDATES: tuple[GpuKernel, ...] = (
    TENSOR_CORE,
    POINTWISE,
    DEPTHWISE,
    IMPLICIT_GEMM,
    DIRECT,
)


def by_name(name: str) -> GpuKernel:
    """The candidate called ``name`` (see ``CANDIDATES`` for the names)."""
    for kernel in CANDIDATES:
        if kernel.name == name:
            return kernel
    raise KeyError(f"no CUDA conv kernel named {name!r}; known: {[k.name for k in CANDIDATES]}")

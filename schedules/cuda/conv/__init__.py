"""CUDA convolution kernels: candidates, their cost model and selection.

``CANDIDATES`` lists the kernels (``GpuKernel``) in preference order, ``by_name`` finds
one, ``choose`` picks one by the cost model for a ``Gpu``. Every kernel reads and writes
the plain ``(N, C, *S)`` layout; the protocol is in ``kernel``.
"""
from convc.schedules.cuda.conv.candidates import CANDIDATES, by_name
from convc.schedules.cuda.conv.kernel import GPUS, Gpu, GpuKernel, KernelBuild, Launch
from convc.schedules.cuda.conv.select import choose

__all__ = ["CANDIDATES", "GPUS", "Gpu", "GpuKernel", "KernelBuild", "Launch", "by_name", "choose"]

"""Blocked-layout CPU convolution kernels: candidates, their cost model and selection.

``ConvProblem`` describes one conv; ``CANDIDATES`` lists the kernels in preference
order; ``choose`` picks one by the cost model. Layout conventions are in ``layout``.
"""
from convc.schedules.cpu.blocked.candidates import CANDIDATES, by_name
from convc.schedules.cpu.blocked.kernel import Kernel, KernelBuild
from convc.schedules.cpu.blocked.layout import pack, pack_operand, physical_shape, unpack
from convc.schedules.cpu.blocked.problem import ConvProblem
from convc.schedules.cpu.blocked.select import choose

__all__ = ["CANDIDATES", "ConvProblem", "Kernel", "KernelBuild", "by_name", "choose", "pack",
           "pack_operand", "physical_shape", "unpack"]

"""What every blocked conv kernel candidate provides, and what a build returns.

A candidate states when it applies (``decline``), its knobs (``default_config``,
``space``), a cost estimate, and builds a scheduled PrimFunc plus the NumPy weight
packer matching it. PrimFunc arguments, in order: data (physical, ``in_block``),
packed weight, packed bias (if ``has_bias``), the epilogue operands (physical, see
``layout``), the output (physical, ``out_block``).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from tvm import tirx

from convc.schedules.cpu.blocked.epilogue import unsupported_step
from convc.schedules.cpu.blocked.machine import Machine, host_machine
from convc.schedules.cpu.blocked.problem import ConvProblem

WeightPacker = Callable[[np.ndarray, "np.ndarray | None"], "tuple[np.ndarray, np.ndarray | None]"]


@dataclass(frozen=True)
class KernelBuild:
    """A scheduled PrimFunc and the packer of its weight and bias arguments."""

    func: tirx.PrimFunc
    pack_weight: WeightPacker


class Kernel(abc.ABC):
    """A conv kernel candidate; subclasses implement the ``_``-prefixed hooks."""

    name: str = ""
    efficiency: float = 0.5  # fraction of the FMA peak its inner loop reaches

    def decline(self, p: ConvProblem) -> str | None:
        """None when this kernel computes ``p``, else the reason it does not."""
        if p.dtype != "float32":
            return f"dtype {p.dtype} (only float32)"
        return unsupported_step(p.epilogue) or self._decline(p)

    @abc.abstractmethod
    def _decline(self, p: ConvProblem) -> str | None: ...

    def default_config(self, p: ConvProblem, machine: Machine | None = None) -> Any:
        """The knobs chosen by simple rules for ``machine`` (default: the host), no measurement."""
        return self._default_config(p, machine or host_machine())

    def space(self, p: ConvProblem, machine: Machine | None = None) -> list[Any]:
        """Every config worth measuring on ``machine`` (default: the host), the default first."""
        return self._space(p, machine or host_machine())

    @abc.abstractmethod
    def _default_config(self, p: ConvProblem, machine: Machine) -> Any: ...

    @abc.abstractmethod
    def _space(self, p: ConvProblem, machine: Machine) -> list[Any]: ...

    @abc.abstractmethod
    def build(self, p: ConvProblem, config: Any) -> KernelBuild:
        """The scheduled PrimFunc (marked ``tirx.is_scheduled``) and its weight packer."""

    def estimate(self, p: ConvProblem, config: Any, machine: Machine | None = None) -> float:
        """Seconds on ``machine`` (default: the host) with all its cores, in a network at small
        batch: compute at this kernel's efficiency, plus the wait for its weight, which is cold
        (read once per inference) and does not overlap the arithmetic (``Machine.cold_weight_bandwidth``)
        unless the kernel prefetches it (``_hides_weight_wait``: then the longer of the two),
        plus the memory traffic it adds (padding, patches)."""
        m = machine or host_machine()
        compute = p.flops / (m.peak * self.efficiency * self._utilisation(p, config, m))
        weights = m.cold_weight_seconds(4 * p.out_channels * p.in_per_group * p.taps)
        busy = max(compute, weights) if self._hides_weight_wait(p, config) else compute + weights
        return busy + self._extra_bytes(p, config, m) / m.bandwidth + m.call_overhead

    def _utilisation(self, p: ConvProblem, config: Any, machine: Machine) -> float:
        """The fraction of the machine's vector lanes, FMA issue and cores doing useful work (0, 1]."""
        return 1.0

    def _extra_bytes(self, p: ConvProblem, config: Any, machine: Machine) -> float:
        """Bytes moved besides reading the input and writing the output once."""
        return 0.0

    def _hides_weight_wait(self, p: ConvProblem, config: Any) -> bool:
        """Whether the kernel fetches its cold weight while it computes (then the slower of the
        two counts, not their sum)."""
        return False


def mark_scheduled(func: tirx.PrimFunc) -> tirx.PrimFunc:
    return func.with_attr("tirx.is_scheduled", True)

"""The machine the cost model assumes: this project's 2-core Zen 3 CPU (AVX2 + FMA).

Numbers are measured on the development machine (an FMA loop for the peak, a copy
loop for the bandwidth); they only need to rank candidates, not predict to the percent.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Machine:
    """Throughput figures of one CPU, for the analytical estimates."""

    peak_flops_per_core: float = 97e9   # FP32: 2 FMA pipes x 8 lanes x 2 flops x ~3 GHz
    cores: int = 2
    lanes: int = 8                       # float32 lanes of one AVX2 register
    registers: int = 16                  # ymm registers
    l2_bytes: int = 2 << 20              # per core
    bandwidth: float = 12e9              # bytes/s from beyond L2, all cores together
    call_overhead: float = 2e-6          # seconds per kernel launch (parallel fork/join)

    @property
    def peak(self) -> float:
        return self.peak_flops_per_core * self.cores


MACHINE = Machine()

"""The machine the cost model assumes, derived from the TVM target it compiles for.

The SIMD width and register count come from the target's CPU features (AVX-512: 16 float32
lanes and 32 vector registers; AVX/AVX2: 8 and 16; otherwise 4 and 16). The clock is a
documented constant, not a measurement: the estimates only rank candidates and size tiles,
so they need the shape of the machine, not its speed to the percent.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import tvm

from convc.errors import ConvcError
from convc.target import resolve_target

# (CPU feature, float32 lanes, vector registers), widest first
_SIMD = (("avx512f", 16, 32), ("avx", 8, 16))
_FALLBACK_SIMD = (4, 16)  # SSE / NEON class
CLOCK_HZ = 3.0e9  # a typical sustained all-core FMA clock of a recent x86 server core


@dataclass(frozen=True)
class Machine:
    """Throughput figures of one CPU, for the analytical estimates and tile sizes."""

    lanes: int = 8                       # float32 lanes of one vector register
    registers: int = 16                  # architectural vector registers
    fma_ports: int = 2                   # vector FMAs issued per cycle
    fma_latency: int = 4                 # cycles before an FMA's result feeds the next
    load_ports: int = 2                  # vector loads issued per cycle
    step_overhead: float = 2.0           # cycles of loop and address arithmetic per inner step
    clock_hz: float = CLOCK_HZ
    cores: int = 2
    l2_bytes: int = 2 << 20              # per core
    core_bandwidth: float = 25e9         # bytes/s one core streams from beyond L2 (a gemv
                                         # ran at 29 GB/s on one Emerald Rapids core)
    call_overhead: float = 2e-6          # seconds per kernel launch (parallel fork/join)
    cold_weight_bandwidth: float = 12e9  # bytes/s per core at which a conv kernel's weight
                                         # arrives from beyond L2 when it is cold (in a network
                                         # at batch 1), NOT overlapping the arithmetic: measured
                                         # cold - warm time / weight bytes, 1 thread, 3x3 convs:
                                         # direct 256ch 14x14 11.8, 512ch 7x7 12.1; Winograd
                                         # F(2x2) 12.3 and 12.8, F(4x4) 256ch 12.1 GB/s

    @property
    def peak_flops_per_core(self) -> float:
        """FP32 FMA peak of one core: lanes x 2 flops x FMA ports x clock."""
        return self.lanes * 2 * self.fma_ports * self.clock_hz

    @property
    def peak(self) -> float:
        return self.peak_flops_per_core * self.cores

    @property
    def bandwidth(self) -> float:
        """Bytes/s from beyond L2, all cores together."""
        return self.core_bandwidth * self.cores

    def cold_weight_seconds(self, weight_bytes: float) -> float:
        """The time a kernel waits for its cold weight, split over the cores."""
        return weight_bytes / (self.cold_weight_bandwidth * self.cores)

    @staticmethod
    def from_target(target: tvm.target.Target) -> "Machine":
        """The machine of an ``llvm`` target (its ``mcpu`` features and ``num-cores``)."""
        if target.kind.name != "llvm":
            raise ConvcError(f"the blocked CPU kernels need an llvm target, got {target.kind.name!r}")
        features = {str(f) for f in tvm.target.codegen.llvm_get_cpu_features(target)}
        lanes, registers = next(((lanes, regs) for feature, lanes, regs in _SIMD if feature in features),
                                _FALLBACK_SIMD)
        cores = int(target.attrs.get("num-cores", 0) or 1)
        return Machine(lanes=lanes, registers=registers, cores=cores)


@functools.lru_cache(maxsize=None)
def host_machine() -> Machine:
    """The machine of the host CPU (``convc.target.resolve_target("llvm")``)."""
    return Machine.from_target(resolve_target("llvm"))

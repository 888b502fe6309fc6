"""The GPU a CUDA conv kernel is compiled for, and the protocol every kernel follows.

``Gpu`` holds the throughput figures the analytical estimates need, from a table by
CUDA architecture (the datasheet figures of one representative part per arch; they rank
candidates, they do not predict to the percent). ``GpuKernel`` is the CUDA twin of the CPU's
``schedules/cpu/blocked/kernel.py:Kernel``: a candidate says when it applies
(``decline``), its knobs (``default_config``, ``space``), an estimate, and builds a
scheduled PrimFunc plus the NumPy packer of its weight and bias.

PrimFunc arguments, in order: data (plain ``(N, C, *S)``, ``p.dtype``), packed weight,
packed bias (if ``p.has_bias``), the epilogue operands (logical shapes
``p.operand_shapes``, read with NumPy broadcasting), the output (plain ``p.out_shape``).
"""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Any

import tvm
from tvm import s_tir

from convc.errors import ConvcError
from convc.lower.elementwise import BINARY, UNARY
from convc.schedules.cpu.blocked.kernel import KernelBuild, WeightPacker, mark_scheduled
from convc.schedules.cpu.blocked.problem import ConvProblem

__all__ = ["ComputeThenSchedule", "DEFAULT_ARCH", "GPUS", "Gpu", "GpuKernel", "KernelBuild", "Launch", "WeightPacker",
           "mark_scheduled"]


@dataclass(frozen=True)
class Gpu:
    """Throughput and resource limits of one NVIDIA GPU (per-SM limits are for occupancy)."""

    arch: str                            # "sm_90"
    part: str                            # the part the figures are taken from
    sms: int                             # streaming multiprocessors
    fp32_peak: float                     # FLOP/s of FP32 FMAs (no tensor cores)
    fp16_tc_peak: float                  # FLOP/s of dense fp16 tensor-core MMAs, fp32 accumulation
    bandwidth: float                     # DRAM bytes/s
    smem_per_sm: int                     # bytes of shared memory one SM can give its blocks
    threads_per_sm: int                  # resident threads per SM
    blocks_per_sm: int                   # resident blocks per SM
    smem_per_block: int = 48 << 10       # static shared memory per block (more needs an opt-in)
    threads_per_block: int = 1024
    registers_per_sm: int = 65536        # 32-bit registers
    launch_overhead: float = 4e-6        # seconds per kernel launch from the Relax VM

    @staticmethod
    def from_arch(arch: str) -> "Gpu":
        """The GPU of a CUDA architecture name ("sm_80", "sm_86", "sm_89", "sm_90")."""
        gpu = GPUS.get(str(arch).strip().lower())
        if gpu is None:
            raise ConvcError(f"unknown CUDA architecture {arch!r}; known: {', '.join(sorted(GPUS))}")
        return gpu

    @staticmethod
    def from_target(target: tvm.target.Target) -> "Gpu":
        """The GPU of a TVM ``cuda`` target (its ``arch`` attribute)."""
        if target.kind.name != "cuda":
            raise ConvcError(f"the CUDA conv kernels need a cuda target, got {target.kind.name!r}")
        return Gpu.from_arch(str(target.attrs.get("arch", "")))


# One representative data-center part per architecture (dense datasheet figures).
GPUS: dict[str, Gpu] = {gpu.arch: gpu for gpu in (
    Gpu("sm_80", "A100 SXM", sms=108, fp32_peak=19.5e12, fp16_tc_peak=312e12, bandwidth=1.6e12,
        smem_per_sm=164 << 10, threads_per_sm=2048, blocks_per_sm=32),
    Gpu("sm_86", "A10", sms=72, fp32_peak=31.2e12, fp16_tc_peak=125e12, bandwidth=600e9,
        smem_per_sm=100 << 10, threads_per_sm=1536, blocks_per_sm=16),
    Gpu("sm_89", "L4", sms=58, fp32_peak=30.3e12, fp16_tc_peak=121e12, bandwidth=300e9,
        smem_per_sm=100 << 10, threads_per_sm=1536, blocks_per_sm=24),
    Gpu("sm_90", "H100 SXM", sms=132, fp32_peak=60e12, fp16_tc_peak=990e12, bandwidth=3.35e12,
        smem_per_sm=228 << 10, threads_per_sm=2048, blocks_per_sm=32),
)}
DEFAULT_ARCH = "sm_80"  # what the estimates assume when no GPU is named
SATURATING_THREADS = 256  # resident threads per SM that hide latency (8 warps)


@dataclass(frozen=True)
class Launch:
    """The grid a config launches: blocks, threads and static shared memory per block,
    and the registers one thread keeps (its accumulators and staged operands)."""

    blocks: int
    threads: int
    smem_bytes: int = 0
    registers: int = 64

    def resident_blocks(self, gpu: Gpu) -> int:
        """Blocks one SM holds at once (threads, shared memory, registers, block slots)."""
        limits = [gpu.blocks_per_sm, gpu.threads_per_sm // self.threads,
                  gpu.registers_per_sm // (max(self.registers, 32) * self.threads)]
        if self.smem_bytes:
            limits.append(gpu.smem_per_sm // self.smem_bytes)
        return max(1, min(limits))

    def utilisation(self, gpu: Gpu) -> float:
        """The fraction of the GPU's throughput the grid can use (0, 1]: SMs left idle by a
        grid smaller than one wave or by a part-full last wave, and SMs given too few warps
        to hide latency (``SATURATING_THREADS`` resident threads per SM reach the peak)."""
        per_sm = min(self.resident_blocks(gpu), math.ceil(self.blocks / gpu.sms))
        waves = math.ceil(self.blocks / (gpu.sms * per_sm))
        busy = self.blocks / (waves * gpu.sms * per_sm)
        return busy * min(1.0, per_sm * self.threads / SATURATING_THREADS)


class GpuKernel(abc.ABC):
    """A CUDA conv kernel candidate; subclasses implement the ``_``-prefixed hooks."""

    name: str = ""
    dtypes: tuple[str, ...] = ("float32",)
    efficiency: float = 0.5  # fraction of the peak its inner loop reaches at a full wave

    def decline(self, p: ConvProblem) -> str | None:
        """None when this kernel computes ``p``, else the reason it does not."""
        if p.dtype not in self.dtypes:
            return f"dtype {p.dtype} (only {', '.join(self.dtypes)})"
        if p.in_block or p.out_block:
            return f"blocked layout (in_block={p.in_block}, out_block={p.out_block}); CUDA reads plain NCHW"
        for step in p.epilogue:
            if step.op not in (BINARY if step.binary else UNARY):
                return f"epilogue step {step.op} has no fused rule"
        return self._decline(p)

    @abc.abstractmethod
    def _decline(self, p: ConvProblem) -> str | None: ...

    def default_config(self, p: ConvProblem, gpu: Gpu | None = None) -> Any:
        """The knobs chosen by simple rules by problem size for ``gpu`` (default: ``DEFAULT_ARCH``)."""
        return self._default_config(p, gpu or Gpu.from_arch(DEFAULT_ARCH))

    def space(self, p: ConvProblem, gpu: Gpu | None = None) -> list[Any]:
        """Every config worth measuring on ``gpu``, the default first, no duplicates."""
        gpu = gpu or Gpu.from_arch(DEFAULT_ARCH)
        configs = [self._default_config(p, gpu)]
        for config in self._space(p, gpu):
            if config not in configs:
                configs.append(config)
        return configs

    @abc.abstractmethod
    def _default_config(self, p: ConvProblem, gpu: Gpu) -> Any: ...

    @abc.abstractmethod
    def _space(self, p: ConvProblem, gpu: Gpu) -> list[Any]: ...

    @abc.abstractmethod
    def build(self, p: ConvProblem, config: Any) -> KernelBuild:
        """The scheduled PrimFunc (marked ``tirx.is_scheduled``, threads bound) and its weight packer."""

    def estimate(self, p: ConvProblem, config: Any, gpu: Gpu | None = None) -> float:
        """Seconds on ``gpu``: the longer of compute (the peak x this config's efficiency x
        the busy fraction of the waves) and DRAM traffic, plus one launch."""
        gpu = gpu or Gpu.from_arch(DEFAULT_ARCH)
        launch = self._launch(p, config)
        compute = p.flops / (self._peak(gpu) * self._efficiency(p, config, gpu) * launch.utilisation(gpu))
        memory = self._traffic(p, config) / gpu.bandwidth
        return max(compute, memory) + gpu.launch_overhead

    def _peak(self, gpu: Gpu) -> float:
        return gpu.fp32_peak

    def _efficiency(self, p: ConvProblem, config: Any, gpu: Gpu) -> float:
        """The fraction of the peak this config's inner loop reaches when every SM is busy."""
        return self.efficiency

    @abc.abstractmethod
    def _launch(self, p: ConvProblem, config: Any) -> Launch:
        """The grid ``build(p, config)`` launches."""

    def _traffic(self, p: ConvProblem, config: Any) -> float:
        """DRAM bytes: input, weight, epilogue operands and output once each (kernels
        that re-read more override)."""
        return element_bytes(p) * (math.prod(p.in_shape) + math.prod(p.weight_shape)
                                   + sum(math.prod(s) for s in p.operand_shapes)
                                   + math.prod(p.out_shape))


def element_bytes(p: ConvProblem) -> int:
    return 2 if p.dtype == "float16" else 4


class ComputeThenSchedule(GpuKernel):
    """A kernel built in two steps: a TE compute (the index arithmetic, buildable for any
    target, so it is checked on the CPU against the NumPy reference), then a schedule."""

    @abc.abstractmethod
    def compute(self, p: ConvProblem, config: Any) -> KernelBuild:
        """The unscheduled PrimFunc (with the block names ``_schedule`` expects) and its weight packer."""

    @abc.abstractmethod
    def _schedule(self, sch: s_tir.Schedule, p: ConvProblem, config: Any) -> None:
        """Schedule ``compute(p, config)``'s PrimFunc in place for the GPU (threads bound)."""

    def build(self, p: ConvProblem, config: Any) -> KernelBuild:
        unscheduled = self.compute(p, config)
        sch = s_tir.Schedule(unscheduled.func)
        self._schedule(sch, p, config)
        return KernelBuild(mark_scheduled(sch.mod["main"]), unscheduled.pack_weight)

"""What differs between convc's backends, by TVM target kind.

A ``Backend`` gives lowering (``convc.lower``), schedule selection
(``convc.passes.select_schedule``), inspection and tuning (``convc.tune``) what is
target-specific: the conv kernel candidates with their selector and names, the machine
model their estimates assume, the scheduler of every other PrimFunc, the channel block of
the activation layout, the runtime device, the checks run on the built code, and the
kernels that fuse an expansion with its depthwise conv and a sub-pixel conv with its
interleave (``convc.lower.fusion``).

    backend = backend_of(target)        # "llvm": convc.schedules.cpu(.blocked)
    kernel, config, verdicts = backend.choose(problem, backend.machine(target))

Each entry is assembled on first use, so compiling for the CPU never imports the CUDA
schedules.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import tvm

from convc.errors import CodegenError
from convc.runtime import nvcc_without_nvrtc

OperandPacker = Callable[[np.ndarray, "tuple[int, ...]", int], np.ndarray]


@dataclass(frozen=True)
class DeviceCode:
    """The device code of a build: the generated source and the binary nvcc made of it."""

    kind: str         # "cuda"
    arch: str         # "sm_90"
    source: str
    binary: bytes     # a cubin
    format: str = "cubin"


@dataclass(frozen=True)
class Backend:
    """Everything convc does differently for one TVM target kind."""

    kind: str                                    # TVM target kind ("llvm", "cuda")
    device: str                                  # convc.runtime device name ("cpu", "cuda")
    candidates: tuple[Any, ...]                  # conv kernels, in preference order
    by_name: Callable[[str], Any]                # kernel by name (KeyError when unknown)
    choose: Callable[..., tuple]                 # (problem, machine) -> (kernel|None, config, verdicts)
    machine: Callable[[tvm.target.Target], Any]  # the machine model of a target
    schedule: Callable[..., Any]                 # (PrimFunc, ScheduleContext) -> scheduled PrimFunc
    channel_block: Callable[[tvm.target.Target], int]
    pack_operand: OperandPacker                  # a constant epilogue operand as the kernels read it
    device_code: Callable[[Any, tvm.target.Target], "DeviceCode | None"]  # checks the built module
    relax_pipeline: Callable[[tvm.target.Target], Any] | None  # tvm.compile's (None: TVM's default)
    finish: Callable[[Any, Any], Any]            # (scheduled PrimFunc, machine) -> the PrimFunc compiled
    pair_kernel: Any = None                      # one kernel for an expansion and its depthwise conv
                                                 # (convc.lower.fusion), or None
    shuffle_kernel: Any = None                   # one kernel for a phase conv and its interleave
                                                 # (convc.lower.fusion), or None

    @property
    def choices(self) -> tuple[str, ...]:
        """The names of the conv kernels (what ``--schedule`` accepts besides ``auto``)."""
        return tuple(k.name for k in self.candidates)


def _no_device_code(module, target) -> None:
    return None


def _as_scheduled(func, machine):
    return func


def _cpu() -> Backend:
    from convc.schedules import cpu
    from convc.schedules.cpu import blocked
    from convc.schedules.cpu.blocked.expand_depthwise import EXPAND_DEPTHWISE
    from convc.schedules.cpu.blocked.machine import Machine
    from convc.schedules.cpu.blocked.shuffled import SUBPIXEL_SHUFFLE
    from convc.schedules.cpu.tasks import one_task_per_core
    from convc.target import channel_block
    return Backend(kind="llvm", device="cpu", candidates=blocked.CANDIDATES, by_name=blocked.by_name,
                   choose=blocked.choose, machine=_cached(Machine.from_target), schedule=cpu.schedule,
                   channel_block=channel_block, pack_operand=blocked.pack_operand,
                   device_code=_no_device_code, relax_pipeline=None,
                   finish=lambda func, machine: one_task_per_core(func, machine.cores),
                   pair_kernel=EXPAND_DEPTHWISE, shuffle_kernel=SUBPIXEL_SHUFFLE)


def _cuda() -> Backend:
    from convc.schedules import cuda
    from convc.schedules.cuda import conv
    nvcc_without_nvrtc()  # a build on a GPU machine compiles the CUDA code in TVM
    return Backend(kind="cuda", device="cuda", candidates=tuple(conv.CANDIDATES), by_name=conv.by_name,
                   choose=conv.choose, machine=_cached(_gpu), schedule=cuda.schedule,
                   channel_block=lambda target: 0, pack_operand=lambda array, out_shape, block: array,
                   device_code=_cuda_device_code, relax_pipeline=_cuda_pipeline, finish=_as_scheduled)


# target kind -> its backend's assembler
_BACKENDS: dict[str, Callable[[], Backend]] = {"llvm": _cpu, "cuda": _cuda}


@functools.cache
def backend(kind: str) -> Backend:
    """The backend of TVM target kind ``kind``; ``CodegenError`` when convc has none."""
    if kind not in _BACKENDS:
        raise CodegenError(f"no schedules for target kind {kind!r}; convc compiles for "
                           f"{', '.join(sorted(_BACKENDS))}")
    return _BACKENDS[kind]()


def backend_of(target: tvm.target.Target) -> Backend:
    """The backend of ``target`` (by its kind)."""
    return backend(target.kind.name)


def _cached(make: Callable[[tvm.target.Target], Any]) -> Callable[[tvm.target.Target], Any]:
    memo: dict[str, Any] = {}

    def machine(target: tvm.target.Target) -> Any:
        key = str(target)
        if key not in memo:
            memo[key] = make(target)
        return memo[key]
    return machine


# -- CUDA ----------------------------------------------------------------------------
def _gpu(target: tvm.target.Target):
    """The GPU model of a cuda target: its arch's entry in the table of ``Gpu``s, else the
    newest tabled arch older than it (a newer GPU is at least that fast)."""
    from convc.schedules.cuda.conv.kernel import DEFAULT_ARCH, GPUS, Gpu
    arch = str(target.attrs.get("arch", DEFAULT_ARCH))
    if arch in GPUS:
        return Gpu.from_arch(arch)
    older = [a for a in GPUS if _arch_number(a) <= _arch_number(arch)]
    return Gpu.from_arch(max(older, key=_arch_number) if older else DEFAULT_ARCH)


def _arch_number(arch: str) -> int:
    digits = "".join(ch for ch in arch if ch.isdigit())
    return int(digits or 0)


def _cuda_pipeline(target: tvm.target.Target):
    """TVM's generic Relax pipeline, with GPU thread bindings for what it legalizes.

    TVM's CUDA pipeline fuses ``call_tir`` kernels (FuseOps, FuseTIR), which would undo
    the kernels convc scheduled (and fails on a reshape between two of them); convc fuses
    epilogues itself, so every kernel is kept as built."""
    from tvm import relax
    from tvm.s_tir import dlight

    @tvm.transform.module_pass(opt_level=0)
    def pipeline(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        with target:
            return tvm.transform.Sequential([
                relax.transform.LegalizeOps(),
                dlight.ApplyDefaultSchedule(dlight.gpu.Fallback()),
                relax.get_pipeline("default"),
            ])(mod)
    return pipeline


def cuda_modules(module) -> list:
    """The CUDA device modules imported by a built or loaded host module (depth first)."""
    found, stack = [], [module]
    while stack:
        current = stack.pop()
        if current.kind == "cuda":
            found.append(current)
        stack.extend(current.imports)
    return found


def _cuda_device_code(module, target: tvm.target.Target) -> DeviceCode:
    """Compile the generated CUDA source with nvcc for the target's arch.

    Where TVM has no CUDA runtime (a machine without a GPU driver) its CUDA module keeps
    the source only, and TVM compiles it when the library is loaded on a GPU; compiling it
    here as well catches code nvcc rejects at build time, and gives the cubin to inspect.
    """
    from tvm.support import nvcc
    arch = str(target.attrs["arch"])
    modules = cuda_modules(module)
    if not modules:
        raise CodegenError("the CUDA build produced no CUDA module")
    source = "\n".join(m.inspect_source() for m in modules)
    try:
        with target:
            binary = nvcc.compile_cuda(source, target_format="cubin", arch=arch, compiler="nvcc")
    except Exception as err:  # TVM raises the source, then "Compilation error:" and nvcc's output
        log = str(err).rpartition("Compilation error:")[2]
        lines = [line.strip() for line in log.splitlines() if "error" in line.lower()] or [type(err).__name__]
        raise CodegenError(f"nvcc failed on the generated CUDA code for {arch}: {'; '.join(lines[:3])}") from err
    return DeviceCode("cuda", arch, source, bytes(binary))

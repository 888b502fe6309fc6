"""Turn a user's target string ("llvm", "cuda", "cuda:sm_90") into a TVM target.

TVM 0.27 takes targets as JSON dicts; the old ``"llvm -mcpu=..."`` strings are
rejected and ``mcpu=native`` falls back to a generic CPU, so the host CPU and its
core count are detected here. A CUDA target names its GPU architecture (``sm_90``);
plain ``"cuda"`` is the local GPU's, and its host code runs on the ``llvm`` host target.
"""
from __future__ import annotations

import os
from typing import Callable

import tvm

from convc.errors import ConvcError


def _host_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _llvm(option: str) -> dict:
    if option:
        raise ConvcError(f"target 'llvm' takes no option, got 'llvm:{option}'")
    return {"kind": "llvm", "mcpu": tvm.target.codegen.llvm_get_system_cpu(),
            "num-cores": _host_cores()}


# CUDA architectures nvcc 13 compiles for ("a": the arch-specific feature set)
CUDA_ARCHS = ("sm_75", "sm_80", "sm_86", "sm_87", "sm_88", "sm_89", "sm_90", "sm_90a", "sm_100",
              "sm_100a", "sm_103", "sm_103a", "sm_110", "sm_120", "sm_120a", "sm_121")


def local_cuda_arch() -> str | None:
    """The architecture of CUDA device 0 (``sm_86``), or None when there is no usable GPU."""
    device = tvm.runtime.cuda(0)
    try:
        if not device.exist:
            return None
        return "sm_" + str(device.compute_version).replace(".", "")
    except Exception:  # no CUDA runtime in this TVM build, or no driver
        return None


def _cuda(option: str) -> dict:
    arch = option.lower()
    if not arch:
        arch = local_cuda_arch()
        if arch is None:
            raise ConvcError("target 'cuda': no CUDA device found to take the architecture from; "
                             "name one, e.g. --target cuda:sm_90 (A100: sm_80, H100: sm_90)")
    elif arch not in CUDA_ARCHS:
        raise ConvcError(f"target 'cuda:{option}': unknown CUDA architecture {option!r}; "
                         f"choose from {', '.join(CUDA_ARCHS)}")
    return {"kind": "cuda", "arch": arch, "host": _llvm("")}


# kind -> (option after ':') -> target dict
_KINDS: dict[str, Callable[[str], dict]] = {"llvm": _llvm, "cuda": _cuda}


def resolve_target(spec: str = "llvm") -> tvm.target.Target:
    """The TVM target for ``spec``: ``"llvm"`` is the host CPU (its LLVM CPU name and core count);
    ``"cuda:sm_90"`` a GPU of that architecture with the host CPU as its host, ``"cuda"`` the
    local GPU (a ``ConvcError`` asks for an architecture when there is none).

    Raises ``ConvcError`` for a target convc cannot generate code for.
    """
    kind, _, option = str(spec).partition(":")
    builder = _KINDS.get(kind.strip().lower())
    if builder is None:
        raise ConvcError(f"unknown target {spec!r}; supported: {', '.join(sorted(_KINDS))}")
    return tvm.target.Target(builder(option.strip()))


# widest float32 SIMD register, in lanes, by the CPU feature that provides it
_SIMD_LANES = (("avx512f", 16), ("avx", 8), ("sse2", 4), ("neon", 4))


def channel_block(target: tvm.target.Target) -> int:
    """The channel block of the blocked activation layout on ``target``: the float32 lanes
    of its widest SIMD register (8 with AVX2), or 0 (plain layout) off the CPU."""
    if target.kind.name != "llvm":
        return 0
    features = {str(f) for f in tvm.target.codegen.llvm_get_cpu_features(target)}
    return next((lanes for feature, lanes in _SIMD_LANES if feature in features), 0)

"""Turn a user's target string ("llvm", "cuda", "cuda:sm_90") into a TVM target.

TVM 0.27 takes targets as JSON dicts; the old ``"llvm -mcpu=..."`` strings are
rejected and ``mcpu=native`` falls back to a generic CPU, so the host CPU and its
core count are detected here.
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


# kind -> (option after ':') -> target dict; "cuda" joins here with its GPU backend.
_KINDS: dict[str, Callable[[str], dict]] = {"llvm": _llvm}


def resolve_target(spec: str = "llvm") -> tvm.target.Target:
    """The TVM target for ``spec``: ``"llvm"`` is the host CPU (its LLVM CPU name and core count).

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

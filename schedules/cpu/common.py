"""What CPU schedule candidates share: their context and small helpers on s_tir schedules."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from tvm import s_tir, tirx

from convc.ir import Op

VECTOR_BITS = 256  # AVX2; wider vectors gain little on these loop nests


@dataclass(frozen=True)
class ScheduleContext:
    """The node a PrimFunc was lowered from: its op, attrs and output dtype."""

    op: Op
    attrs: Any
    dtype: str


def lanes(dtype: str) -> int:
    """Vector lanes of one SIMD register for ``dtype``."""
    return max(1, VECTOR_BITS // (8 * np.dtype(dtype).itemsize)) if dtype != "bool" else VECTOR_BITS // 8


def vector_width(n: int, limit: int) -> int:
    """The largest power of two that divides ``n`` and is at most ``limit``."""
    width = 1
    while width * 2 <= limit and n % (width * 2) == 0:
        width *= 2
    return width


def largest_divisor(n: int, limit: int) -> int:
    """The largest divisor of ``n`` that is at most ``limit`` (1 when none is larger)."""
    return max(d for d in range(1, max(1, min(n, limit)) + 1) if n % d == 0)


def is_reduction(sch: s_tir.Schedule, block) -> bool:
    return any(int(iv.iter_type) == tirx.IterVar.CommReduce for iv in sch.get(block).iter_vars)


def loop_extent(sch: s_tir.Schedule, loop) -> int:
    return int(sch.get(loop).extent)


def is_empty(sch: s_tir.Schedule, block) -> bool:
    """Whether ``block`` never runs: one of its loops has extent 0 (a zero-size tensor).

    Such a block needs no schedule, and fusing or splitting its loops divides by zero.
    """
    return any(loop_extent(sch, loop) == 0 for loop in sch.get_loops(block))


def inline_producers(sch: s_tir.Schedule) -> None:
    """Inline every spatial block that is not an output (padding, casts, elementwise prologues)."""
    outputs = {sch.get(b).name_hint for b in sch.get_output_blocks("root")}
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        if sch.get(block).name_hint in outputs or is_reduction(sch, block):
            continue
        try:
            sch.compute_inline(block)
        except s_tir.schedule.ScheduleError:
            continue  # e.g. a block read by a reduction's init; it stays a loop nest of its own

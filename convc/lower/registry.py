"""The table of lowerings: one function per IR op, mapping (node, input tensors) to TE.

A lowering receives the node (for its attrs and output types), one ``te.Tensor`` per
node input and a ``Tables`` through which it may add constant lookup tables (resize
weights), and returns the output tensor (or a tuple, one per node output). The
lowering modules register themselves on import; ``convc.lower`` imports them all.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from tvm import te

from convc.ir import Node, Op


class Tables:
    """Constant arrays a lowering needs as extra kernel inputs (embedded as Relax constants)."""

    def __init__(self) -> None:
        self.arrays: list[np.ndarray] = []
        self.tensors: list[te.Tensor] = []

    def add(self, array: np.ndarray, name: str) -> te.Tensor:
        array = np.require(array, requirements="C")
        tensor = te.placeholder(array.shape, array.dtype.name, f"{name}{len(self.arrays)}")
        self.arrays.append(array)
        self.tensors.append(tensor)
        return tensor


Lowering = Callable[[Node, Sequence[te.Tensor], Tables], "te.Tensor | tuple[te.Tensor, ...]"]

_LOWERINGS: dict[Op, Lowering] = {}


def lowering(*ops: Op) -> Callable[[Lowering], Lowering]:
    """Register the decorated function as the lowering of ``ops``."""
    def register(fn: Lowering) -> Lowering:
        for op in ops:
            if op in _LOWERINGS:
                raise AssertionError(f"lowering for {op} registered twice")
            _LOWERINGS[op] = fn
        return fn
    return register


def lowering_of(op: Op) -> Lowering | None:
    """The lowering of ``op``, or None when convc has none."""
    return _LOWERINGS.get(op)

"""Make a sub-pixel phase conv write its rows straight into the interleaved output.

A sub-pixel phase conv computes the output rows ``s*q + r`` of a transposed conv (phase
``r`` per spatial axis, ``convc.passes.subpixel``). ``write_phases`` takes the scheduled
PrimFunc of such a conv, whose last parameter is its output ``(N, C, *Q, ...)`` (blocked:
``(N, C/b, *Q, b)``; dimension 1 counted in blocks), holding ``C / per_phase`` phases one
after the other along dimension 1, and returns the same kernel writing the interleaved
output ``(N, per_phase, *(Q*s), ...)`` instead: its channel ``c`` goes to channel
``c % per_phase`` at position ``q*s + r`` of phase ``first + c // per_phase``. Loops,
vectorisation and everything else stay as scheduled (in the blocked layout each store is
still a whole vector of channels); positions of other phases are not touched, so the convs
of the phases of one output write it in turn, in place (``relax.call_tir_inplace``), and
no interleave kernel reads the phases back.
"""
from __future__ import annotations

import math
from typing import Sequence

from tvm import ir, tirx
from tvm.s_tir.stmt import SBlock, SBlockRealize

from convc.errors import CodegenError


def write_phases(func: tirx.PrimFunc, strides: Sequence[int], first: int, per_phase: int) -> tirx.PrimFunc:
    """``func`` writing its output's phases into the interleaved output (see the module
    docstring): ``strides`` per spatial axis, ``first`` the row-major index of its first phase,
    ``per_phase`` the extent of dimension 1 per phase."""
    old = func.params[-1]  # a buffer is a Var typed with its shape
    shape = [int(d) for d in old.ty.shape]
    if shape[1] % per_phase or first + shape[1] // per_phase > math.prod(strides):
        raise CodegenError(f"write_phases: {shape[1]} channels from phase {first} do not fit {strides}")
    full = [shape[0], per_phase, *(q * s for q, s in zip(shape[2:], strides)), *shape[2 + len(strides):]]
    new = tirx.decl_buffer(full, old.ty.dtype, old.name, data_alignment=old.ty.data_alignment,
                           offset_factor=old.ty.offset_factor)
    remap = _Remap(old, new, tuple(strides), first, per_phase)
    body = remap.stmt(func.body)
    if not remap.stores:
        raise CodegenError(f"write_phases: the kernel never stores to its output {old.name!r}")
    return tirx.PrimFunc([*func.params[:-1], new], body, func.ret_type, func.attrs)


class _Remap:
    """Rebuilds the statements that store to ``old`` (stores and block write regions) onto ``new``."""

    def __init__(self, old, new, strides: tuple[int, ...], first: int, per_phase: int):
        self.old, self.new, self.strides = old, new, strides
        self.first, self.per_phase = first, per_phase
        self.stores = 0

    def _digits(self, phase) -> list:
        """The row-major digits of ``phase`` over ``strides``: its offset on each spatial axis."""
        digits = []
        for s in reversed(self.strides):
            digits.append(tirx.floormod(phase, s))
            phase = tirx.floordiv(phase, s)
        return digits[::-1]

    def index(self, indices) -> list:
        n, c, *rest = indices
        offsets = self._digits(self.first + tirx.floordiv(c, self.per_phase))
        spatial = [q * s + r for q, s, r in zip(rest, self.strides, offsets)]
        return [n, tirx.floormod(c, self.per_phase), *spatial, *rest[len(self.strides):]]

    def region(self, region):
        """A write region of ``old`` as its bounding box in ``new``."""
        if not region.source.same_as(self.old):
            return region
        full = [int(d) for d in self.new.ty.shape]
        ranges = [region.region[0], ir.Range.from_min_extent(0, full[1])]
        ranges += [ir.Range.from_min_extent(0, d) for d in full[2:2 + len(self.strides)]]
        ranges += list(region.region[2 + len(self.strides):])
        return tirx.BufferRegion(self.new, ranges)

    def stmt(self, s):
        if s is None:
            return None
        if isinstance(s, tirx.BufferStore):
            if not s.buffer.same_as(self.old):
                return s
            self.stores += 1
            return tirx.BufferStore(self.new, s.value, self.index(s.indices))
        if isinstance(s, tirx.For):
            return tirx.For(s.loop_var, s.min, s.extent, s.kind, self.stmt(s.body), s.thread_binding, s.annotations)
        if isinstance(s, tirx.SeqStmt):
            return tirx.SeqStmt([self.stmt(part) for part in s.seq])
        if isinstance(s, SBlockRealize):
            return SBlockRealize(s.iter_values, s.predicate, self.stmt(s.block))
        if isinstance(s, SBlock):
            if any(r.source.same_as(self.old) for r in s.reads):
                raise CodegenError(f"write_phases: block {s.name_hint!r} reads the output back")
            return SBlock(s.iter_vars, s.reads, [self.region(r) for r in s.writes], s.name_hint, self.stmt(s.body),
                          self.stmt(s.init), s.alloc_buffers, s.match_buffers, s.annotations)
        if isinstance(s, tirx.IfThenElse):
            return tirx.IfThenElse(s.condition, self.stmt(s.then_case), self.stmt(s.else_case))
        if isinstance(s, tirx.AttrStmt):
            return tirx.AttrStmt(s.node, s.attr_key, s.value, self.stmt(s.body))
        if isinstance(s, (tirx.Evaluate, tirx.LetStmt, tirx.AllocBuffer, tirx.DeclBuffer)):
            return s
        raise CodegenError(f"write_phases: unexpected statement {type(s).__name__} in the kernel")

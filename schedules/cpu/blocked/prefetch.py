"""Software prefetch of a kernel's next block of weights, spread over a loop.

At batch 1 a network reads each weight once per inference, from memory, and the hardware
prefetcher (which stops at every 4 KiB page) leaves the register tile waiting for most of
those lines (``Machine.cold_weight_bandwidth``). A kernel whose reduction over weight blocks
runs outside a loop ``spread`` can fetch the next block while it computes on this one: each
iteration of ``spread`` issues ``llvm.prefetch`` for its share of the lines, outside the
register tile's loops (a prefetch inside them costs the tile its registers).

TVM 0.27 has no Python statement mutator, so the loop is found by its variable and the
statements above it are rebuilt.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

from tvm import tirx
from tvm.s_tir.stmt import SBlock, SBlockRealize

CACHE_LINE_FLOATS = 16
LOCALITY_ALL_LEVELS = 3
# Lines per burst at most: longer bursts overflow the line-fill buffers (3x3 512 channels on
# 7x7, cold, 1 thread: 1.98 ms spread over the positions (41 lines a burst), 1.47 over the
# positions and rows of taps (14), 1.54 over every tap (5)).
BURST_LINES = 16


def prefetch_weights(func: tirx.PrimFunc, weight: tirx.Buffer, spread: Sequence[tirx.For],
                     inner: Sequence[tirx.For], block_start: Sequence, block_floats: int) -> tirx.PrimFunc:
    """``func`` with a prefetch of the block of ``block_floats`` contiguous floats of ``weight``
    that follows the block at index ``block_start`` (expressions of the enclosing loops'
    variables; the last block prefetches nothing new), spread over the iterations of the
    nested loops ``spread`` and then of as many of the ``inner`` loops nested in them as bring
    each burst to ``BURST_LINES`` (outermost first): the body of the innermost chosen loop
    first issues its share of the next block's cache lines."""
    lines = -(-block_floats // CACHE_LINE_FLOATS)
    loops = list(spread)
    for loop in inner:
        if lines <= BURST_LINES * math.prod(int(x.extent) for x in loops):
            break
        loops.append(loop)
    iterations = math.prod(int(x.extent) for x in loops)
    per_iteration = -(-lines // iterations)
    position = tirx.const(0, "int32")
    for loop in loops:
        position = position * loop.extent + loop.loop_var
    line = tirx.Var("prefetch_line", "int32")
    offset = block_floats + tirx.min((position * per_iteration + line) * CACHE_LINE_FLOATS, block_floats - 1)
    target = tirx.BufferLoad(weight, _advance(weight, block_start, offset))
    issue = tirx.Evaluate(tirx.call_llvm_intrin(
        "void", "llvm.prefetch.p0", tirx.address_of(target), tirx.const(0, "int32"),
        tirx.const(LOCALITY_ALL_LEVELS, "int32"), tirx.const(1, "int32")))
    prefetch = tirx.For(line, 0, per_iteration, tirx.ForKind.SERIAL, issue)

    def insert(loop: tirx.For) -> tirx.Stmt:
        return tirx.For(loop.loop_var, loop.min, loop.extent, loop.kind, tirx.SeqStmt([prefetch, loop.body]),
                        loop.thread_binding, loop.annotations)

    body, found = _rewrite_loop(func.body, loops[-1].loop_var, insert)
    if not found:
        raise ValueError(f"prefetch_weights: no loop over {loops[-1].loop_var} in the function")
    return func.with_body(body)


def weight_read_by(sch, block) -> tirx.Buffer:
    """The buffer named ``weight`` that ``block`` (of the schedule ``sch``) reads."""
    return next(region.source for region in sch.get(block).reads if region.source.name == "weight")


def _advance(buffer: tirx.Buffer, start: Sequence, offset) -> list:
    """Indices of ``buffer`` ``offset`` elements (row-major) after the index ``start``, at most
    its last element."""
    shape = [int(d) for d in buffer.shape]
    flat = tirx.const(0, "int32")
    for index, size in zip(start, shape):
        flat = flat * size + index
    flat = tirx.min(flat + offset, math.prod(shape) - 1)
    indices = []
    for size in reversed(shape):
        indices.append(tirx.floormod(flat, size))
        flat = tirx.floordiv(flat, size)
    return indices[::-1]


def _rewrite_loop(stmt: tirx.Stmt, var: tirx.Var, rewrite: Callable) -> tuple[tirx.Stmt, bool]:
    """``stmt`` with the loop over ``var`` replaced by ``rewrite(loop)``; whether it was found.
    Only the statements on the path to the loop are rebuilt."""
    if isinstance(stmt, tirx.For):
        if stmt.loop_var.same_as(var):
            return rewrite(stmt), True
        body, found = _rewrite_loop(stmt.body, var, rewrite)
        if not found:
            return stmt, False
        return tirx.For(stmt.loop_var, stmt.min, stmt.extent, stmt.kind, body, stmt.thread_binding,
                        stmt.annotations), True
    if isinstance(stmt, tirx.SeqStmt):
        parts, hit = [], False
        for part in stmt.seq:
            new, found = (part, False) if hit else _rewrite_loop(part, var, rewrite)
            parts.append(new)
            hit = hit or found
        return (tirx.SeqStmt(parts), True) if hit else (stmt, False)
    if isinstance(stmt, SBlockRealize):
        block, found = _rewrite_loop(stmt.block, var, rewrite)
        return (SBlockRealize(stmt.iter_values, stmt.predicate, block), True) if found else (stmt, False)
    if isinstance(stmt, SBlock):
        body, found = _rewrite_loop(stmt.body, var, rewrite)
        if not found:
            return stmt, False
        return SBlock(stmt.iter_vars, stmt.reads, stmt.writes, stmt.name_hint, body, stmt.init,
                      stmt.alloc_buffers, stmt.match_buffers, stmt.annotations), True
    return stmt, False

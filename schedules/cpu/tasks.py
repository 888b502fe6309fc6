"""Parallel loops as one task per core.

TVM runs a parallel loop of ``n`` iterations as one task per thread, each task a contiguous
run of iterations, and enters the loop body once per iteration. Buffers the body allocates
(register tiles over 1 KiB, the band buffers of fused kernels) are therefore taken from TVM's
workspace pool and given back on every iteration: thousands of calls per kernel for a 1x1
conv with a parallel chunk per register tile. ``one_task_per_core`` splits each parallel loop
into ``cores`` parallel tasks over a serial loop of the same contiguous runs, so TVM's storage
planner allocates those buffers once per task. Run with as many threads as cores, each
thread runs the iterations it ran before, in the same order; with fewer, TVM shares the
tasks out among them; with more, only ``cores`` of them work.
"""
from __future__ import annotations

from tvm import tirx
from tvm.s_tir.stmt import SBlock, SBlockRealize


def one_task_per_core(func: tirx.PrimFunc, cores: int) -> tirx.PrimFunc:
    """``func`` with every parallel loop of more than ``cores`` iterations run as ``cores``
    parallel tasks, each looping serially over its contiguous share (the last share may be
    shorter). Everything else is unchanged; with ``cores`` <= 1 ``func`` is returned as is."""
    if cores <= 1:
        return func
    body = _Split(cores).stmt(func.body)
    return func if body.same_as(func.body) else tirx.PrimFunc(func.params, body, func.ret_type, func.attrs)


class _Split:
    """Rebuilds the statements on the way to each parallel loop (see ``one_task_per_core``)."""

    def __init__(self, cores: int):
        self.cores = cores

    def loop(self, s: tirx.For) -> tirx.Stmt:
        n = int(s.extent) if isinstance(s.extent, tirx.IntImm) else 0
        if n <= self.cores or s.step is not None:  # symbolic, one iteration per core at most, or strided
            return s
        share = -(-n // self.cores)
        index = str(s.extent.ty)
        task = tirx.Var(f"{s.loop_var.name}_task", index)
        begin = s.min + task * share
        extent = tirx.IntImm(index, share) if n % share == 0 else tirx.min(share, n - task * share)
        run = tirx.For(s.loop_var, begin, extent, tirx.ForKind.SERIAL, s.body, s.thread_binding, s.annotations)
        return tirx.For(task, tirx.IntImm(index, 0), tirx.IntImm(index, -(-n // share)), tirx.ForKind.PARALLEL, run)

    def stmt(self, s):
        if s is None:
            return None
        if isinstance(s, tirx.For):
            if s.kind == tirx.ForKind.PARALLEL:
                return self.loop(s)
            body = self.stmt(s.body)
            return s if body.same_as(s.body) else tirx.For(s.loop_var, s.min, s.extent, s.kind, body,
                                                             s.thread_binding, s.annotations)
        if isinstance(s, tirx.SeqStmt):
            parts = [self.stmt(part) for part in s.seq]
            return s if all(a.same_as(b) for a, b in zip(parts, s.seq)) else tirx.SeqStmt(parts)
        if isinstance(s, SBlockRealize):
            block = self.stmt(s.block)
            return s if block.same_as(s.block) else SBlockRealize(s.iter_values, s.predicate, block)
        if isinstance(s, SBlock):
            body = self.stmt(s.body)
            return s if body.same_as(s.body) else SBlock(s.iter_vars, s.reads, s.writes, s.name_hint, body, s.init,
                                                         s.alloc_buffers, s.match_buffers, s.annotations)
        if isinstance(s, tirx.IfThenElse):
            then, other = self.stmt(s.then_case), self.stmt(s.else_case)
            if then.same_as(s.then_case) and (other is None or other.same_as(s.else_case)):
                return s
            return tirx.IfThenElse(s.condition, then, other)
        if isinstance(s, tirx.AttrStmt):
            body = self.stmt(s.body)
            return s if body.same_as(s.body) else tirx.AttrStmt(s.node, s.attr_key, s.value, body)
        return s  # leaves (stores, lets, evaluations, allocations) hold no loop

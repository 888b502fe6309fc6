"""Helpers for checking CUDA-scheduled code on the CPU."""
from __future__ import annotations

import tvm_ffi
from tvm import tirx


def serial(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """``func`` with every thread-bound loop made a serial loop (what one CPU thread can run)."""
    def unbind(loop: tirx.For, mutator):
        body = mutator.mutate(loop.body)
        kind = tirx.ForKind.SERIAL if loop.kind == tirx.ForKind.THREAD_BINDING else loop.kind
        return tirx.For(loop.loop_var, loop.min, loop.extent, kind, body, annotations=loop.annotations)
    return func.with_body(tvm_ffi.structural_mutate(func.body, [(tirx.For, unbind)]))

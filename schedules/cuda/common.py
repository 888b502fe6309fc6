"""What the CUDA schedule rules share: the target, thread-count limits, and the check that a
scheduled PrimFunc binds every block to GPU threads."""
from __future__ import annotations

import tvm
from tvm import s_tir, tirx

DEFAULT_ARCH = "sm_90"
THREADS = 256  # threads per block of the one-thread-per-output rules


def current_target() -> tvm.target.Target:
    """The CUDA target being built for: ``Target.current()`` when it is a CUDA target (convc
    builds under ``with target:``), else CUDA ``sm_90`` with an llvm host."""
    target = tvm.target.Target.current(allow_none=True)
    if target is not None and target.kind.name == "cuda":
        return target
    return tvm.target.Target({"kind": "cuda", "arch": DEFAULT_ARCH, "max_shared_memory_per_block": 49152},
                             host={"kind": "llvm"})


def max_threads(target: tvm.target.Target) -> int:
    """Threads one block may have on ``target`` (1024 on every CUDA GPU convc targets)."""
    return int(target.attrs.get("max_num_threads", 1024))


def _thread_tag(loop: tirx.For) -> str:
    binding = loop.thread_binding
    return "" if binding is None else str(binding.thread_tag)


def unbound_blocks(func: tirx.PrimFunc) -> list[str]:
    """Names of the blocks of ``func`` that may run outside a ``blockIdx`` loop: they would
    run on the host, on device memory. Empty for a properly scheduled GPU kernel.

    TVM 0.27 builds such a PrimFunc for CUDA without complaint (as host code), so this is
    the check that a kernel really is one. Blocks under a zero-extent loop never run.
    """
    unbound: list[str] = []

    def visit(stmt, bound: bool) -> None:
        if isinstance(stmt, tirx.For):
            if isinstance(stmt.extent, tirx.IntImm) and int(stmt.extent) == 0:
                return
            visit(stmt.body, bound or _thread_tag(stmt).startswith("blockIdx"))
        elif isinstance(stmt, s_tir.SBlockRealize):
            block = stmt.block
            if block.name_hint != "root" and not bound:
                unbound.append(block.name_hint)
            if block.init is not None:
                visit(block.init, bound)
            visit(block.body, bound)
        elif isinstance(stmt, tirx.SeqStmt):
            for s in stmt.seq:
                visit(s, bound)
        elif isinstance(stmt, tirx.IfThenElse):
            visit(stmt.then_case, bound)
            if stmt.else_case is not None:
                visit(stmt.else_case, bound)
        elif hasattr(stmt, "body"):
            visit(stmt.body, bound)

    visit(func.body, False)
    return unbound


def outputs_empty(func: tirx.PrimFunc) -> bool:
    """Whether every output of ``func`` has no elements (then no block of it ever needs to run)."""
    sch = s_tir.Schedule(func)
    written = [region.source for block in sch.get_output_blocks("root") for region in sch.get(block).writes]
    return bool(written) and all(any(int(d) == 0 for d in tensor.shape) for tensor in written)


def bind_spatial(sch: s_tir.Schedule, block, threads: int):
    """Fuse the loops of spatial ``block`` (innermost last, so neighbouring threads write
    neighbouring elements) and bind them as (blockIdx.x, threadIdx.x); return the thread loop."""
    loops = sch.get_loops(block)
    fused = sch.fuse(*loops) if len(loops) > 1 else (loops[0] if loops else sch.add_unit_loop(block))
    extent = int(sch.get(fused).extent)
    bx, tx = sch.split(fused, factors=[None, max(1, min(threads, extent))])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    return tx

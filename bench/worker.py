"""One benchmark process at a fixed thread count (set before TVM's thread pool starts).

Usage: python -m bench.worker THREADS MODEL[,MODEL...] OUT.json [--no-stock-tvm]
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path


def _timed(fn, count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def relative_l2(actual, expected) -> float:
    import numpy as np
    return float(np.linalg.norm(actual - expected) / max(float(np.linalg.norm(expected)), 1e-30))


def _has_conv_transpose(model) -> bool:
    return any(node.op_type == "ConvTranspose" for node in model.graph.node)


SETTLE_SECONDS = 0.2  # idle time before each block, so the other runtime's spinning threads sleep
ROUNDS = 5


def _interleaved(runners: dict, block_seconds: float = 0.15) -> list[dict]:
    """Two passes of interleaved blocks (A, B, C, A, B, C, ...); the median ms per runner per pass.

    Both runtimes' thread pools spin for a while after a run; switching between them run
    by run would let one steal the cores of the other, so each block of runs starts after
    a short idle pause.
    """
    for run in runners.values():  # warm-up
        _timed(run, 3)
    once = max(min(_timed(run, 3)) for run in runners.values())
    per_block = max(1, min(100, int(block_seconds / max(once, 1e-6))))
    passes = []
    for _ in range(2):
        times = {label: [] for label in runners}
        for _ in range(ROUNDS):
            for label, run in runners.items():
                time.sleep(SETTLE_SECONDS)
                times[label] += _timed(run, per_block)
        passes.append({**{f"{label}_ms": statistics.median(t) * 1e3 for label, t in times.items()},
                       "runs": len(times["convc"])})
    return passes


def bench_model(name: str, model, threads: int, stock_tvm: bool, tuning_db: str | None = None) -> dict:
    """convc (and, for models with transposed convs, convc without the sub-pixel rewrite; with
    ``tuning_db``, convc compiled with that tuning database) against onnxruntime, interleaved;
    stock TVM timed separately (it is orders of magnitude slower)."""
    import onnxruntime as ort

    import convc
    from convc.analysis import node_flops
    from convc.compiler import lower_to_ir
    from convc.target import resolve_target
    from convc.zoo import random_inputs

    inputs = random_inputs(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    expected = session.run(None, inputs)

    start = time.perf_counter()
    compiled = convc.compile(model)
    compile_seconds = time.perf_counter() - start
    variants = {"convc": compiled}
    if _has_conv_transpose(model):
        variants["zero_insertion"] = convc.compile(model, disable_passes={"subpixel"})
        if name.startswith("layer:"):
            direct = _zero_insertion_direct(model)
            if direct is not None:
                variants["zero_insertion_direct"] = direct
    if tuning_db is not None:
        variants["tuned"] = convc.compile(model, tuning_db=tuning_db)
    errors = {label: max(relative_l2(a, e) for a, e in zip(m.run(inputs), expected))
              for label, m in variants.items()}
    runners = {label: (lambda m=m: m.run(inputs)) for label, m in variants.items()}
    runners["ort"] = lambda: session.run(None, inputs)
    result = {"model": name, "threads": threads, "flops": sum(node_flops(n) for n in lower_to_ir(model).nodes),
              "compile_s": compile_seconds, "rel_l2_vs_ort": errors["convc"], "rel_l2": errors,
              "passes": _interleaved(runners)}
    if stock_tvm and not name.startswith("layer:"):  # the baseline that matters is whole networks
        from bench.stock_tvm import build_stock_tvm
        run = build_stock_tvm(model, resolve_target("llvm"))
        stock_out = run(inputs)
        result["stock_tvm_rel_l2"] = max(relative_l2(a, e) for a, e in zip(stock_out, expected))
        run(inputs)
        result["stock_tvm_ms"] = statistics.median(_timed(lambda: run(inputs), 3)) * 1e3
    return result


def _zero_insertion_direct(model):
    """The zero-insertion form with every conv on the ``direct`` kernel: the zero-inserted conv
    doing all its multiplications, which is the cost the sub-pixel form removes. (The cost
    model may pick Winograd for a zero-inserted 3x3 or 2x2 conv, which saves multiplications
    in a different way: the ``zero_insertion`` variant.) None where ``direct`` does not apply."""
    import convc
    compiled = convc.compile(model, disable_passes={"subpixel"}, schedule="direct")
    convs = [symbol for symbol, _ in compiled.signature.kernels if symbol.startswith("conv_")]
    return compiled if convs and all(s.startswith("conv_direct") for s in convs) else None


def main(argv: list[str]) -> None:
    threads, names, out = int(argv[0]), argv[1].split(","), Path(argv[2])
    stock = "--no-stock-tvm" not in argv
    assert os.environ.get("TVM_NUM_THREADS") == str(threads), "set TVM_NUM_THREADS before starting the worker"
    from bench.suites import load_model
    from bench.tune import TUNING_DIR, read_budget
    tuned = read_budget()
    results = []
    for name in names:
        print(f"[{threads} thread(s)] {name} ...", file=sys.stderr, flush=True)
        db = str(TUNING_DIR) if name in tuned else None
        results.append(bench_model(name, load_model(name), threads, stock, db))
        if db is not None:
            results[-1]["tuning"] = tuned[name]
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])

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


def bench_model(name: str, model, threads: int, stock_tvm: bool, min_seconds: float = 1.0) -> dict:
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
    outputs = compiled.run(inputs)
    error = max(relative_l2(a, e) for a, e in zip(outputs, expected))
    flops = sum(node_flops(n) for n in lower_to_ir(model).nodes)

    # warm up both, then interleave rounds so drift hits both alike; two passes
    once = max(_timed(lambda: compiled.run(inputs), 3) + _timed(lambda: session.run(None, inputs), 3))
    per_round = max(1, min(20, int(0.1 / max(once, 1e-6))))
    rounds = max(4, int(min_seconds / max(once * per_round, 1e-6)))
    passes = []
    for _ in range(2):
        convc_times, ort_times = [], []
        for _ in range(rounds):
            convc_times += _timed(lambda: compiled.run(inputs), per_round)
            ort_times += _timed(lambda: session.run(None, inputs), per_round)
        passes.append({"convc_ms": statistics.median(convc_times) * 1e3,
                       "ort_ms": statistics.median(ort_times) * 1e3, "runs": len(convc_times)})
    result = {"model": name, "threads": threads, "flops": flops, "compile_s": compile_seconds,
              "rel_l2_vs_ort": error, "passes": passes}
    if stock_tvm:
        from bench.stock_tvm import build_stock_tvm
        run = build_stock_tvm(model, resolve_target("llvm"))
        stock_out = run(inputs)
        result["stock_tvm_rel_l2"] = max(relative_l2(a, e) for a, e in zip(stock_out, expected))
        run(inputs)
        result["stock_tvm_ms"] = statistics.median(_timed(lambda: run(inputs), 3)) * 1e3
    return result


def main(argv: list[str]) -> None:
    threads, names, out = int(argv[0]), argv[1].split(","), Path(argv[2])
    stock = "--no-stock-tvm" not in argv
    assert os.environ.get("TVM_NUM_THREADS") == str(threads), "set TVM_NUM_THREADS before starting the worker"
    from bench.suites import load_model
    results = []
    for name in names:
        print(f"[{threads} thread(s)] {name} ...", file=sys.stderr, flush=True)
        results.append(bench_model(name, load_model(name), threads, stock))
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])

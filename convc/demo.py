"""``convc demo``: the quickstart's end-to-end run on a bundled example CNN."""
from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import onnx

import convc
from convc.zoo import build, random_inputs


def relative_l2(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-30))


def run_demo(workdir: Path) -> int:
    """Build the 'tiny' example, compile it, reload the library, check and time it."""
    workdir.mkdir(parents=True, exist_ok=True)
    model_path, library_path = workdir / "tiny.onnx", workdir / "tiny.so"
    onnx.save(build("tiny"), model_path)
    print(f"example model:  {model_path}")
    convc.compile(str(model_path)).export_library(library_path)
    print(f"compiled to:    {library_path}")
    model = convc.load(library_path)
    inputs = random_inputs(onnx.load(model_path))
    outputs = model.run(inputs)
    try:
        import onnxruntime
    except ImportError:
        print("onnxruntime is not installed: skipping the comparison")
    else:
        session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        expected = session.run(None, inputs)
        errors = [relative_l2(a, e) for a, e in zip(outputs, expected)]
        print(f"vs onnxruntime: relative L2 error {max(errors):.2e}")
        if max(errors) > 1e-4:
            print("MISMATCH: convc and onnxruntime disagree")
            return 1
    times = model.benchmark(inputs, repeat=50)
    print(f"latency:        median {statistics.median(times) * 1e3:.3f} ms over {len(times)} runs")
    return 0

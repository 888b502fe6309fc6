"""Stock TVM as a baseline: its own ONNX importer and default compilation pipeline."""
from __future__ import annotations

from typing import Callable

import numpy as np
import onnx


def build_stock_tvm(model: onnx.ModelProto, target) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
    """Import with ``tvm.relax.frontend.onnx.from_onnx``, compile with ``tvm.compile``; return a runner."""
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    mod = from_onnx(model, keep_params_in_input=False)
    vm = relax.VirtualMachine(tvm.compile(mod, target=target), tvm.cpu())
    names = [i.name for i in model.graph.input]

    def run(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = vm["main"](*[tvm.runtime.tensor(inputs[n]) for n in names])
        items = result if isinstance(result, (list, tuple)) or hasattr(result, "__len__") and not hasattr(
            result, "numpy") else [result]
        return [r.numpy() for r in items]
    return run

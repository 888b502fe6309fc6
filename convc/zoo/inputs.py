"""Random inputs for a model's graph inputs."""
from __future__ import annotations

import numpy as np
import onnx

from convc.zoo.builder import ZooError


def random_inputs(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal float32 arrays for every graph input that is not an initializer.

    Raises ZooError for an input that is not float32 or whose shape is not static.
    """
    rng = np.random.default_rng(seed)
    constants = {t.name for t in model.graph.initializer}
    arrays = {}
    for value in model.graph.input:
        if value.name in constants:
            continue
        tensor = value.type.tensor_type
        if tensor.elem_type != onnx.TensorProto.FLOAT:
            raise ZooError(f"input {value.name!r} has element type "
                           f"{onnx.TensorProto.DataType.Name(tensor.elem_type)}, not FLOAT")
        dims = tuple(d.dim_value if d.HasField("dim_value") else 0 for d in tensor.shape.dim)
        if not tensor.HasField("shape") or any(d < 1 for d in dims):
            raise ZooError(f"input {value.name!r} has no static shape "
                           f"({[d.dim_param or d.dim_value for d in tensor.shape.dim]})")
        arrays[value.name] = rng.standard_normal(dims, dtype=np.float32)
    return arrays

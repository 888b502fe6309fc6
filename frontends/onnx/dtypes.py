"""ONNX tensor element types <-> the IR's dtype names, and tensor protos -> NumPy arrays."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from convc.errors import ModelError, ShapeError

_IR_DTYPES = {
    TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16", TensorProto.DOUBLE: "float64",
    TensorProto.INT8: "int8", TensorProto.INT16: "int16", TensorProto.INT32: "int32",
    TensorProto.INT64: "int64", TensorProto.UINT8: "uint8", TensorProto.UINT16: "uint16",
    TensorProto.UINT32: "uint32", TensorProto.UINT64: "uint64", TensorProto.BOOL: "bool",
}


def onnx_type_name(elem_type: int) -> str:
    try:
        return TensorProto.DataType.Name(elem_type)
    except ValueError:
        return f"<unknown element type {elem_type}>"


def ir_dtype(elem_type: int, what: str) -> str:
    """The IR dtype of ONNX element type ``elem_type``; ``what`` names the tensor for errors."""
    if elem_type not in _IR_DTYPES:
        raise ShapeError(f"{what} has element type {onnx_type_name(elem_type)}, which convc does not "
                         f"support (supported: {', '.join(sorted(set(_IR_DTYPES.values())))})")
    return _IR_DTYPES[elem_type]


def to_array(tensor: onnx.TensorProto, what: str) -> np.ndarray:
    """The NumPy value of a tensor proto, in an IR dtype."""
    dtype = ir_dtype(tensor.data_type, what)
    try:
        array = numpy_helper.to_array(tensor)
    except Exception as exc:  # a malformed proto makes onnx raise anything
        raise ModelError(f"{what}: cannot read tensor data ({exc})") from None
    return np.asarray(array).astype(dtype, copy=False)

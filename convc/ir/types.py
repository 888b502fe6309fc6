"""Tensor types of the IR: a static shape and a dtype name."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convc.errors import ShapeError

FLOAT_DTYPES = ("float16", "float32", "float64")
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
DTYPES = FLOAT_DTYPES + INT_DTYPES + ("bool",)


@dataclass(frozen=True)
class TensorType:
    """A tensor's static shape (a tuple of non-negative ints) and dtype (a NumPy name)."""

    shape: tuple[int, ...]
    dtype: str

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ShapeError(f"unsupported dtype {self.dtype!r}")
        if any((not isinstance(d, (int, np.integer))) or d < 0 for d in self.shape):
            raise ShapeError(f"shape {self.shape} is not static and non-negative")
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    def __str__(self) -> str:
        short = {"float32": "f32", "float16": "f16", "float64": "f64", "int64": "i64",
                 "int32": "i32", "bool": "bool"}.get(self.dtype, self.dtype)
        return f"{short}[{','.join(map(str, self.shape))}]"

    @staticmethod
    def of(array: np.ndarray) -> "TensorType":
        return TensorType(tuple(array.shape), np.dtype(array.dtype).name)

"""Small helpers shared by the op definitions."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from convc.errors import ShapeError
from convc.ir.types import TensorType


def broadcast_shapes(op: str, *shapes: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ShapeError(f"{op}: shapes {', '.join(map(str, shapes))} do not broadcast") from None


def require(cond: bool, message: str) -> None:
    if not cond:
        raise ShapeError(message)


def same_dtype(op: str, types: Sequence[TensorType]) -> str:
    dtypes = {t.dtype for t in types}
    require(len(dtypes) == 1, f"{op}: inputs have mixed dtypes {sorted(dtypes)}")
    return types[0].dtype


def int_tuple(values) -> tuple[int, ...]:
    return tuple(int(v) for v in values)

"""TE views between the plain and blocked channel layouts (see ``convc.layout``).

A blocked tensor of logical shape ``(N, C, *S)`` is stored as ``(N, C/b, *S, b)``.
``logical_view`` reads a stored tensor as logical; ``store_blocked`` writes a logical
result in the blocked layout. Kernels built from these views index the stored tensor
directly once the views are inlined (the block index arithmetic simplifies away).
"""
from __future__ import annotations

from tvm import te

from convc.schedules.cpu.blocked.layout import physical_shape


def logical_view(stored: te.Tensor, shape: tuple[int, ...], block: int) -> te.Tensor:
    """The logical ``shape`` tensor held by ``stored`` (layout ``block``; 0 = plain)."""
    if not block:
        return stored
    return te.compute(shape, lambda n, c, *s: stored[(n, c // block, *s, c % block)], name="unblock")


def store_blocked(logical: te.Tensor, block: int) -> te.Tensor:
    """``logical`` written in layout ``block`` (0: returned unchanged)."""
    if not block:
        return logical
    shape = tuple(int(d) for d in logical.shape)
    return te.compute(physical_shape(shape, block),
                      lambda n, co, *rest: logical[(n, co * block + rest[-1], *rest[:-1])], name="block")


def stored_placeholder(shape: tuple[int, ...], dtype: str, block: int, name: str) -> te.Tensor:
    return te.placeholder(physical_shape(shape, block), dtype, name)

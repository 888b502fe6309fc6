"""The table of ONNX op converters, keyed by op type and the opset they apply from.

A converter is registered for ``(op_type, since)``; the importer picks, for a model of
opset ``v``, the entry with the largest ``since <= v`` (and ``v <= until`` when given).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    from convc.frontends.onnx.context import Context
    from convc.ir import Value

ConverterFn = Callable[["Context"], "Value | Sequence[Value]"]

MIN_OPSET = 11


@dataclass(frozen=True)
class _Entry:
    since: int
    until: int | None
    fn: ConverterFn


_TABLE: dict[str, list[_Entry]] = {}


def converter(*op_types: str, since: int = MIN_OPSET, until: int | None = None):
    """Register the decorated function as the converter of ``op_types`` for opsets ``since..until``."""
    def register(fn: ConverterFn) -> ConverterFn:
        for op_type in op_types:
            entries = _TABLE.setdefault(op_type, [])
            if any(e.since == since for e in entries):
                raise AssertionError(f"converter for {op_type} since opset {since} registered twice")
            entries.append(_Entry(since, until, fn))
            entries.sort(key=lambda e: e.since)
        return fn
    return register


def lookup(op_type: str, opset: int) -> ConverterFn | None:
    """The converter of ``op_type`` for a model of ``opset``, or None."""
    found = None
    for entry in _TABLE.get(op_type, ()):
        if entry.since <= opset and (entry.until is None or opset <= entry.until):
            found = entry.fn
    return found


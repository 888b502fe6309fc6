"""Deterministic JSON for the frozen dataclasses of convc (problems, epilogues, kernel configs).

A dataclass becomes ``{"type": ClassName, **fields}``, an enum its value, a tuple a list;
``dumps`` sorts keys, so equal objects give equal text (and equal signature hashes).
"""
from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from typing import Any


def plain(obj: Any) -> Any:
    """``obj`` as JSON-able data (see the module docstring)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"type": type(obj).__name__,
                **{f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}}
    if isinstance(obj, enum.Enum):
        return plain(obj.value)
    if isinstance(obj, (tuple, list)):
        return [plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot encode {type(obj).__name__} {obj!r} as tuning-record JSON")


def dumps(data: Any) -> str:
    """Canonical compact JSON of already plain ``data``."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def digest(data: Any) -> str:
    """A short stable hash of plain ``data``."""
    return hashlib.sha256(dumps(data).encode()).hexdigest()[:16]


def knobs(config: Any) -> dict:
    """A kernel config's fields (its knobs) without the type tag."""
    data = plain(config)
    return {k: v for k, v in data.items() if k != "type"} if isinstance(data, dict) else {"value": data}


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def decode_config(template: Any, type_name: str, values: dict) -> Any:
    """The config of ``template``'s class with ``values``; None when the class or fields differ
    (a record written by another version of the kernel). A field the record lacks takes its
    default: knobs are added with the default that builds the kernel the record measured."""
    cls = type(template)
    if not dataclasses.is_dataclass(cls) or cls.__name__ != type_name:
        return None
    fields = {f.name: f for f in dataclasses.fields(cls)}
    missing = set(fields) - set(values)
    if not set(values) <= set(fields) or any(fields[name].default is dataclasses.MISSING for name in missing):
        return None
    try:
        config = cls(**{k: _tuples(v) for k, v in values.items()})
    except (TypeError, ValueError):
        return None
    decoded = plain(config)
    return config if {k: decoded[k] for k in values} == values else None

"""What a converter sees: the builder, the ONNX node, typed attributes, its inputs."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
from onnx import AttributeProto, helper

from convc.errors import ModelError, ShapeError, UnsupportedAttributeError
from convc.frontends.onnx.dtypes import to_array
from convc.ir import GraphBuilder, Op, Value


def describe(node: onnx.NodeProto) -> str:
    """``Conv 'conv1'``: how messages and ``Node.origin`` name an ONNX node."""
    return f"{node.op_type} {node.name or (node.output[0] if node.output else '?')!r}"


class Attributes:
    """Typed, tracked access to a node's attributes.

    Every read marks the attribute consumed; after conversion the importer rejects any
    attribute no converter read (``unconsumed``), so none is ignored silently.
    """

    def __init__(self, node: onnx.NodeProto):
        self._where = describe(node)
        self._protos = {a.name: a for a in node.attribute}
        self._consumed: set[str] = set()

    def has(self, name: str) -> bool:
        return name in self._protos

    def _get(self, name: str, kind: int, default: Any) -> Any:
        self._consumed.add(name)
        proto = self._protos.get(name)
        if proto is None:
            return default
        if proto.type != kind:
            raise ModelError(f"{self._where}: attribute {name!r} has type "
                             f"{AttributeProto.AttributeType.Name(proto.type)}, expected "
                             f"{AttributeProto.AttributeType.Name(kind)}")
        return helper.get_attribute_value(proto)

    def int(self, name: str, default: int | None = None) -> int | None:
        value = self._get(name, AttributeProto.INT, default)
        return None if value is None else int(value)

    def ints(self, name: str, default: Sequence[int] | None = None) -> tuple[int, ...] | None:
        value = self._get(name, AttributeProto.INTS, default)
        return None if value is None else tuple(int(v) for v in value)

    def float(self, name: str, default: float | None = None) -> float | None:
        value = self._get(name, AttributeProto.FLOAT, default)
        return None if value is None else float(value)

    def floats(self, name: str, default: Sequence[float] | None = None) -> tuple[float, ...] | None:
        value = self._get(name, AttributeProto.FLOATS, default)
        return None if value is None else tuple(float(v) for v in value)

    def string(self, name: str, default: str | None = None) -> str | None:
        value = self._get(name, AttributeProto.STRING, default)
        return value.decode() if isinstance(value, bytes) else value

    def tensor(self, name: str) -> np.ndarray | None:
        value = self._get(name, AttributeProto.TENSOR, None)
        return None if value is None else to_array(value, f"{self._where}: attribute {name!r}")

    def unconsumed(self) -> list[str]:
        return sorted(set(self._protos) - self._consumed)


class Context:
    """The state one converter works with.

    ``inputs[i]`` is the IR value of the node's i-th input, or None where the optional
    input is omitted (empty name). ``emit`` appends IR nodes whose origin is this node.
    """

    def __init__(self, builder: GraphBuilder, node: onnx.NodeProto, opset: int,
                 inputs: Sequence[Value | None]):
        self.builder = builder
        self.node = node
        self.opset = opset
        self.inputs = tuple(inputs)
        self.attrs = Attributes(node)
        self.where = describe(node)

    # -- inputs ----------------------------------------------------------------
    def input(self, index: int) -> Value:
        """The required input ``index``."""
        value = self.optional_input(index)
        if value is None:
            raise ModelError(f"{self.where}: required input #{index} is missing")
        return value

    def optional_input(self, index: int) -> Value | None:
        return self.inputs[index] if index < len(self.inputs) else None

    def const_input(self, index: int, what: str) -> np.ndarray:
        """The value of input ``index`` (called ``what`` in messages), which must be a constant."""
        value = self.input(index)
        array = self.builder.const_value(value)
        if array is None:
            raise ShapeError(f"dynamic shapes are not supported: input {what!r} of {self.where} "
                             f"is not a constant (it is computed from {value.name!r} at run time)")
        return array

    def optional_const(self, index: int, what: str) -> np.ndarray | None:
        """Like ``const_input``, but None when the input is omitted."""
        return None if self.optional_input(index) is None else self.const_input(index, what)

    # -- outputs ---------------------------------------------------------------
    def used_outputs(self) -> int:
        """How many of the node's outputs are bound (non-empty names)."""
        return sum(1 for name in self.node.output if name)

    def reject_extra_outputs(self, count: int, what: str) -> None:
        """Raise if any output beyond the first ``count`` is used (``what`` names them)."""
        if any(self.node.output[count:]):
            raise UnsupportedAttributeError(f"{self.where}: the optional output(s) {what} are not supported")

    # -- building --------------------------------------------------------------
    def emit(self, op: Op, inputs: Sequence[Value], attrs: Any = None, name: str = "") -> Value:
        """Append ``op(inputs)`` (folded when all inputs are constants) and return its output."""
        hint = name or (self.node.output[0] if self.node.output else self.node.op_type)
        return self.builder.emit1(op, inputs, attrs, name=hint, origin=f"onnx:{self.where}")

    def constant(self, array, dtype: str | None = None, name: str = "") -> Value:
        array = np.asarray(array, dtype=dtype)
        return self.builder.constant(array, name or f"{self.node.output[0] if self.node.output else 'c'}_const")

    def scalar(self, value: float, like: Value) -> Value:
        """A 0-d constant of ``like``'s dtype."""
        return self.constant(np.array(value, dtype=like.dtype))

    def unsupported(self, attr: str, value: Any, why: str) -> UnsupportedAttributeError:
        return UnsupportedAttributeError(f"{self.where}: {attr}={value!r} is not supported ({why})")

    def malformed(self, message: str) -> ModelError:
        return ModelError(f"{self.where}: {message}")

    def axis(self, axis: int, rank: int, what: str = "axis") -> int:
        """``axis`` normalised to ``[0, rank)``."""
        if not -rank <= axis < rank:
            raise self.malformed(f"{what} {axis} is outside [-{rank}, {rank})")
        return axis % rank if rank else 0

    def axes(self, axes: Sequence[int], rank: int, what: str = "axes") -> tuple[int, ...]:
        """Normalised, checked for duplicates, in the given order."""
        out = tuple(self.axis(int(a), rank, what) for a in axes)
        if len(set(out)) != len(out):
            raise self.malformed(f"{what} {tuple(axes)} repeat an axis")
        return out

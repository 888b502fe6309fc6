"""ONNX model -> convc IR graph."""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import onnx
from google.protobuf.message import DecodeError

from convc.errors import ConvcError, ModelError, ShapeError, UnsupportedAttributeError, UnsupportedOperatorError
from convc.frontends.onnx import converters  # noqa: F401  (fills the registry)
from convc.frontends.onnx.context import Context, describe
from convc.frontends.onnx.dtypes import ir_dtype, to_array
from convc.frontends.onnx.registry import MIN_OPSET, lookup
from convc.ir import Graph, GraphBuilder, TensorType, Value

DEFAULT_DOMAINS = ("", "ai.onnx")


def import_model(model: str | os.PathLike | onnx.ModelProto,
                 input_shapes: Mapping[str, Sequence[int]] | None = None) -> Graph:
    """Convert an ONNX model (a path or a ``ModelProto``) into a convc IR graph.

    Graph inputs keep the ONNX input names (initializers listed as inputs become
    constants); ``output_names`` are the ONNX outputs in order. ``input_shapes`` fills
    symbolic or unknown input dimensions. Raises ``ModelError`` for an unreadable or
    malformed model, ``UnsupportedOperatorError`` listing every op without a converter,
    ``UnsupportedAttributeError`` and ``ShapeError`` naming the offending node.
    """
    proto = _load(model)
    opset = _default_opset(proto)
    graph = proto.graph
    _check_supported(graph, opset)
    builder = GraphBuilder(graph.name or "model")
    env: dict[str, Value] = {}
    initializers = {t.name: t for t in graph.initializer}
    shapes = dict(input_shapes or {})
    unknown = set(shapes) - {i.name for i in graph.input if i.name not in initializers}
    if unknown:
        raise ShapeError(f"input_shapes names {sorted(unknown)}, which are not inputs of the model "
                         f"(inputs: {[i.name for i in graph.input if i.name not in initializers]})")
    for value_info in graph.input:
        if value_info.name not in initializers:
            env[value_info.name] = builder.add_input(value_info.name, _input_type(value_info, shapes))
    for name, tensor in initializers.items():
        env[name] = builder.constant(to_array(tensor, f"initializer {name!r}"), name)
    for node in graph.node:
        _convert(builder, node, opset, env)
    missing = [o.name for o in graph.output if o.name not in env]
    if missing:
        raise ModelError(f"graph output(s) {missing} are not produced by any node")
    return builder.build([env[o.name] for o in graph.output], [o.name for o in graph.output])


def _load(model) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    path = os.fspath(model)
    try:
        return onnx.load(path)
    except FileNotFoundError:
        raise ModelError(f"model file {path!r} does not exist") from None
    except (DecodeError, OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"cannot read ONNX model {path!r}: {exc}") from None


def _default_opset(proto: onnx.ModelProto) -> int:
    versions = [o.version for o in proto.opset_import if o.domain in DEFAULT_DOMAINS]
    if not versions:
        raise ModelError("the model imports no version of the default ONNX operator set (ai.onnx)")
    opset = max(versions)
    if opset < MIN_OPSET:
        raise ModelError(f"the model uses ONNX opset {opset}; convc supports opset {MIN_OPSET} and later "
                         f"(upgrade it with onnx.version_converter.convert_version(model, {MIN_OPSET}))")
    return opset


def _check_supported(graph: onnx.GraphProto, opset: int) -> None:
    """Raise one error naming every node whose op has no converter."""
    missing: dict[str, list[str]] = {}
    for node in graph.node:
        if node.domain not in DEFAULT_DOMAINS:
            key = f"{node.domain}.{node.op_type}"
        elif lookup(node.op_type, opset) is None:
            key = f"{node.op_type} (opset {opset})"
        else:
            continue
        missing.setdefault(key, []).append(node.name or (node.output[0] if node.output else "?"))
    if missing:
        raise UnsupportedOperatorError(missing)


def _input_type(value_info: onnx.ValueInfoProto, shapes: Mapping[str, Sequence[int]]) -> TensorType:
    name = value_info.name
    if value_info.type.WhichOneof("value") != "tensor_type":
        raise ModelError(f"input {name!r} is not a tensor (it is a {value_info.type.WhichOneof('value')})")
    tensor_type = value_info.type.tensor_type
    dtype = ir_dtype(tensor_type.elem_type, f"input {name!r}")
    if not tensor_type.HasField("shape"):
        if name not in shapes:
            raise _unknown_shape(name, "has no shape")
        dims: list[int | str | None] = [None] * len(shapes[name])
    else:
        dims = [d.dim_value if d.WhichOneof("value") == "dim_value" else (d.dim_param or None)
                for d in tensor_type.shape.dim]
    if name in shapes:
        given = tuple(int(d) for d in shapes[name])
        if len(given) != len(dims):
            raise ShapeError(f"input_shapes gives {name!r} the shape {list(given)} of rank {len(given)}, "
                             f"but the model declares rank {len(dims)}")
        clash = [(i, d, g) for i, (d, g) in enumerate(zip(dims, given)) if isinstance(d, int) and d != g]
        if clash:
            raise ShapeError(f"input_shapes gives {name!r} the shape {list(given)}, but the model fixes "
                             + ", ".join(f"dim {i} = {d}" for i, d, _ in clash))
        dims = list(given)
    unknown = [d for d in dims if not isinstance(d, int)]
    if unknown:
        raise _unknown_shape(name, f"has symbolic or unknown dimensions {['?' if d is None else d for d in dims]}")
    return TensorType(tuple(dims), dtype)


def _unknown_shape(name: str, why: str) -> ShapeError:
    return ShapeError(f"input {name!r} {why}; convc needs static shapes: pass "
                      f"input_shapes={{{name!r}: [...]}} (on the command line: --input-shape {name}=1,3,224,224)")


def _convert(builder: GraphBuilder, node: onnx.NodeProto, opset: int, env: dict[str, Value]) -> None:
    where = describe(node)
    for name in node.input:
        if name and name not in env:
            raise ModelError(f"{where}: input {name!r} is not defined before use")
    ctx = Context(builder, node, opset, [env[n] if n else None for n in node.input])
    try:
        result = lookup(node.op_type, opset)(ctx)
        extra = ctx.attrs.unconsumed()
        if extra:
            raise UnsupportedAttributeError(f"{where}: attribute(s) {extra} are not supported")
    except ConvcError as exc:
        if str(exc).startswith(where) or isinstance(exc, UnsupportedOperatorError):
            raise
        raise type(exc)(f"{where}: {exc}") from exc
    outputs = (result,) if isinstance(result, Value) else tuple(result)
    for name, value in zip(node.output, outputs):
        if name:
            env[name] = value
    if any(name for name in node.output[len(outputs):]):
        raise UnsupportedAttributeError(f"{where}: only the first {len(outputs)} output(s) are supported")
